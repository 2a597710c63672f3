"""The learnable grouped convs and their parts (gates, generators)."""
from .dgc import DGCConv, GlobalThreshold, prune_schedule
from .flgc import FLGCConv2d
from .gates import BinaryConcreteGate, TopKSaliencyGate
from .generators import AttentionGenerator, MaskGenerator, SaliencyGenerator
from .msgc import MSGCConv2d, SelfGatedMSGCConv2d
from .self_grouping import SelfGroupedConv2d, SelfGroupedLinear
from .sync_norm import AllReduceSyncBatchNorm
from .static_groups import (ConnectionMaskedConv2d, GroupLayout,
                            RaggedGroupConv2d, fold_output_order,
                            replace_masked_convs)

__all__ = [
    'AllReduceSyncBatchNorm', 'AttentionGenerator', 'BinaryConcreteGate',
    'ConnectionMaskedConv2d', 'DGCConv', 'FLGCConv2d', 'fold_output_order',
    'GlobalThreshold', 'GroupLayout', 'MaskGenerator', 'MSGCConv2d',
    'prune_schedule', 'RaggedGroupConv2d', 'replace_masked_convs',
    'SaliencyGenerator', 'SelfGatedMSGCConv2d', 'SelfGroupedConv2d',
    'SelfGroupedLinear', 'TopKSaliencyGate'
]
