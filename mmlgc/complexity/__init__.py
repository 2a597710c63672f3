"""MAC accounting shared by every learnable grouped conv.

Layers report, on each forward, the dense cost of what they computed and the
per-sample cost a sparse execution would have paid (:class:`CostReporter`);
:func:`collect_costs` sums them over a model. The budget loss, the training
logs, ``tools/analysis/get_flops.py`` and the benchmarks all read that one
record, so every method is counted the same way.
"""
from .cost import (CostRecord, CostReporter, CostSummary, ShapeOf,
                   collect_costs, conv_macs, conv_output_size, clear_costs,
                   downsample_macs)

__all__ = [
    'CostRecord', 'CostReporter', 'CostSummary', 'clear_costs',
    'collect_costs', 'conv_macs', 'conv_output_size', 'downsample_macs',
    'register_op_handles', 'ShapeOf',
    'stage_of',
    'stage_ratios'
]

from .analysis import register_op_handles  # noqa: E402
from .stages import stage_of, stage_ratios  # noqa: E402

register_op_handles()
