"""Averaged models (``EMAHook(ema_type='mmlgc....')``) that copy the
discrete state of learned grouped convolutions instead of averaging it.

mmengine 0.10.7 averages every floating-point parameter (and, with
``update_buffers=True``, every floating-point buffer) and copies the other
buffers once, at the first step, never again. For the layers of this
project both are wrong (binary masks stop being binary, a threshold of
``-inf`` becomes ``nan``, assignment logits select other groups, a pruning
``k`` frozen at 0 prunes nothing): see :mod:`mmlgc.utils.model_averaging`.
Each class here is mmengine's, whose ``update_parameters`` ends with
:func:`~mmlgc.utils.model_averaging.copy_discrete_state`::

    custom_hooks = [dict(type='EMAHook',
                         ema_type='mmlgc.ExponentialMovingAverage')]
"""
from mmengine.model import BaseAveragedModel
from mmengine.model import ExponentialMovingAverage as _EMA
from mmengine.model import MomentumAnnealingEMA as _AnnealingEMA
from mmengine.model import StochasticWeightAverage as _SWA
from torch import nn

from ..registry import MODELS
from ..utils.model_averaging import copy_discrete_state


class DiscreteStateAveraging(BaseAveragedModel):
    """Mixin for any ``BaseAveragedModel`` (list it first): after each
    averaging step, copies the trained model's discrete state."""

    def update_parameters(self, model: nn.Module) -> None:
        super().update_parameters(model)
        copy_discrete_state(self.module, model)


@MODELS.register_module()
class ExponentialMovingAverage(DiscreteStateAveraging, _EMA):
    """mmengine's ``ExponentialMovingAverage`` with discrete state copied."""


@MODELS.register_module()
class MomentumAnnealingEMA(DiscreteStateAveraging, _AnnealingEMA):
    """mmengine's ``MomentumAnnealingEMA`` with discrete state copied."""


@MODELS.register_module()
class StochasticWeightAverage(DiscreteStateAveraging, _SWA):
    """mmengine's ``StochasticWeightAverage`` with discrete state copied."""
