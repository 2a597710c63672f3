from . import reference
from ._ext_loader import ext_available
from .dynamic_group_conv import dynamic_group_conv
from .gather_channels import gather_channels
from .ragged_group_conv import pack_weights, ragged_group_conv, unpack_weights

__all__ = [
    'dynamic_group_conv', 'ext_available', 'gather_channels', 'pack_weights',
    'ragged_group_conv', 'reference', 'unpack_weights'
]
