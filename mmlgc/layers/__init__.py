"""The learnable grouped convs and their parts (gates, generators)."""
from .gates import BinaryConcreteGate
from .generators import AttentionGenerator, MaskGenerator
from .msgc import MSGCConv2d

__all__ = [
    'AttentionGenerator', 'BinaryConcreteGate', 'MaskGenerator', 'MSGCConv2d'
]
