from . import cuda_kernels, reference
from ._ext_loader import ext_available
from .dynamic_group_conv import dynamic_group_conv
from .ragged_group_conv import pack_weights, ragged_group_conv, unpack_weights

if ext_available():
    cuda_kernels.register()

__all__ = [
    'dynamic_group_conv', 'ext_available', 'pack_weights',
    'ragged_group_conv', 'reference', 'unpack_weights'
]
