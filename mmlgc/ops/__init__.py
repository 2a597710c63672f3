from . import reference
from ._ext_loader import ext_available
from .gather_channels import gather_channels

__all__ = ['ext_available', 'gather_channels', 'reference']
