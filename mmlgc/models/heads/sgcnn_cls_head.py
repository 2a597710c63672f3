"""SG-CNN's grouped classifier (``docs/sgcnn.md``: "all three bottleneck
convs and the FC pruned")."""
from mmpretrain.models.heads import LinearClsHead

from ...layers.self_grouping import SelfGroupedLinear
from ...registry import MODELS
from ..dense_checkpoints import keep_dense_load_grouping_state


@MODELS.register_module()
class SelfGroupedLinearClsHead(LinearClsHead):
    """mmpretrain's ``LinearClsHead`` whose ``fc`` is a
    :class:`~mmlgc.layers.self_grouping.SelfGroupedLinear`: the same
    parameters (a dense head's checkpoint loads, its ``fc.mask`` and
    ``fc.grouped_ratio`` staying dense) times a mask that
    :class:`mmlgc.engine.SelfGroupingHook` groups as SG-CNN groups the FC
    layer: each output unit's importance vector is ``|W[o, :]|``, clustered
    and thresholded like a conv's. Same arguments as ``LinearClsHead``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fc = SelfGroupedLinear.from_linear(self.fc)
        keep_dense_load_grouping_state(self)
