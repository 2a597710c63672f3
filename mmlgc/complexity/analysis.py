"""mmlgc's ops in mmengine's complexity analysis.

mmengine's ``FlopAnalyzer`` (behind ``get_model_complexity_info`` and the
mm* ``get_flops.py`` tools) traces the model and counts known ATen ops; a
custom op it does not know is skipped with a warning, so a deployed model
would look almost free. :func:`register_op_handles` (run on ``import mmlgc``)
adds handles for mmlgc's grouped convs to mmengine's defaults. A trace sees
shapes, not mask values, so the handles count the *dense-equivalent* MACs
(every group reading every input channel; ragged groups: their actual static
connectivity); per-image dynamic MACs come from :mod:`mmlgc.complexity`'s
records instead.
"""
from typing import Any, List

from mmengine.analysis import complexity_analysis
from mmengine.analysis.jit_handles import get_shape


def _prod(values) -> int:
    result = 1
    for v in values:
        result *= int(v)
    return result


def dynamic_group_conv_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``mmlgc::dynamic_group_conv(x, weight[O, C, kh, kw], ...)``: each
    output element reads all ``C·kh·kw`` inputs at most."""
    weight = get_shape(inputs[1])
    out = get_shape(outputs[0])
    return _prod(out) * _prod(weight[1:])


def ragged_group_conv_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``mmlgc::ragged_group_conv(x, packed_weight, ...)``: the packed weight
    holds exactly the static connections, once per output pixel."""
    packed = get_shape(inputs[1])
    out = get_shape(outputs[0])
    return out[0] * _prod(out[2:]) * _prod(packed)


HANDLES = {
    'mmlgc::dynamic_group_conv': dynamic_group_conv_flop_jit,
    'mmlgc::ragged_group_conv': ragged_group_conv_flop_jit,
}


def register_op_handles() -> None:
    """Make every ``FlopAnalyzer`` (hence ``get_model_complexity_info``)
    count mmlgc's ops."""
    complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS.update(HANDLES)
