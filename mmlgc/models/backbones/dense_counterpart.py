"""What a grouped backbone says about itself to tools that compare it with
the dense backbone it extends (``tools/analysis/benchmark_model.py``)."""
import inspect
from typing import Optional, Tuple

import torch
from torch import Tensor

from ...complexity import collect_costs


class DenseCounterpartMixin:
    """``dense_class``: the mm* backbone the grouped one extends;
    :meth:`dense_cfg` its config; :meth:`calibrate_untrained` the method's
    masks or groups for a model that has not been trained."""

    dense_class: type

    @classmethod
    def dense_cfg(cls, cfg: dict) -> dict:
        """The dense backbone's config from ``cfg``, this backbone's: the
        dense type and the arguments it takes (the method's dropped; FLGC's
        ``depthwise`` too: that variant compares with the plain ResNet, as
        in the paper)."""
        args = inspect.signature(cls.dense_class.__init__).parameters
        dense = {k: v for k, v in cfg.items() if k in args}
        dense['type'] = cls.dense_class.__name__
        return dense

    @torch.no_grad()
    def calibrate_untrained(self, x: Tensor, target: float,
                            seed: int) -> Tuple[Optional[float], float]:
        """Give an untrained model the masks or groups its method would
        run at the MACs ratio ``target`` on ``x`` (where the method has such
        a knob), run it on ``x``; returns (the knob's value or None, the
        measured MACs ratio). Default: the model as it is."""
        self(x)
        return None, collect_costs(self).ratio.item()
