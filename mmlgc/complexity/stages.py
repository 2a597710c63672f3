"""Cost records grouped by stage, for the logs and the plots."""
from collections import OrderedDict
from typing import Dict

from torch import Tensor

from .cost import CostSummary


def stage_of(name: str) -> str:
    """The stage of a reporting layer: ``'stem'`` for the backbone's own
    record, the backbone's top-level layer (``'layer2'`` for
    ``backbone.layer2.1``, also from a bare backbone's ``layer2.1``), or the
    model's top-level module (``'neck'`` for ``neck.fpn_convs.0.conv``)."""
    if name.startswith('backbone.'):
        name = name[len('backbone.'):]
    elif name == 'backbone':
        name = ''
    return name.split('.')[0] if name else 'stem'


def stage_ratios(summary: CostSummary) -> Dict[str, Tensor]:
    """``{stage: batch-mean dynamic MACs / dense MACs}`` over the layers of
    each stage, in model order (detached)."""
    dense, dynamic = OrderedDict(), OrderedDict()
    for name, record in summary.per_layer.items():
        stage = stage_of(name)
        dense[stage] = dense.get(stage, 0.0) + record.dense
        mean = record.dynamic.detach().float().mean()
        dynamic[stage] = mean + dynamic[stage] if stage in dynamic else mean
    return {
        stage: dynamic[stage] / dense[stage]
        for stage in dense if dense[stage] > 0
    }
