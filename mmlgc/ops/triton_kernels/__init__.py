"""Triton forward kernels of ``mmlgc::dynamic_group_conv`` and
``mmlgc::ragged_group_conv``: the ops' CUDA implementation (registered in
:mod:`mmlgc.ops.cuda_kernels`), run by the Triton interpreter on CPU in the
tests and compiled ahead of time for sm_80 / sm_90 by
``tools/analysis/compile_gpu_kernels.py``. Importing this package imports
triton (about a second), so nothing imports it until a CUDA tensor needs it.
"""
from .group_conv import dynamic_group_conv, ragged_group_conv
from .group_conv_kernel import (KERNEL_DTYPES, TILE_CONFIGS, TileConfig,
                                choose_tile, group_conv_forward_kernel,
                                tile_configs)

__all__ = [
    'KERNEL_DTYPES', 'TILE_CONFIGS', 'TileConfig', 'choose_tile',
    'dynamic_group_conv', 'group_conv_forward_kernel', 'ragged_group_conv',
    'tile_configs'
]
