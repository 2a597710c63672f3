"""The learnable grouped convs and their parts (gates, generators)."""
from .dgc import DGCConv, GlobalThreshold, prune_schedule
from .gates import BinaryConcreteGate, TopKSaliencyGate
from .generators import AttentionGenerator, MaskGenerator, SaliencyGenerator
from .msgc import MSGCConv2d

__all__ = [
    'AttentionGenerator', 'BinaryConcreteGate', 'DGCConv', 'GlobalThreshold',
    'MaskGenerator', 'MSGCConv2d', 'prune_schedule', 'SaliencyGenerator',
    'TopKSaliencyGate'
]
