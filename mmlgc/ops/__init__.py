from . import cuda_kernels, reference
from ._ext_loader import ext_available
from .affine_relu import affine_relu_mean
from .dynamic_group_conv import dynamic_group_conv
from .ragged_group_conv import pack_weights, ragged_group_conv, unpack_weights

if ext_available():
    cuda_kernels.register()

__all__ = [
    'affine_relu_mean', 'dynamic_group_conv', 'ext_available', 'pack_weights',
    'ragged_group_conv', 'reference', 'unpack_weights'
]
