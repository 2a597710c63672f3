"""SG-CNN's progressive self-grouping and fine-tuning schemes as an
mmengine hook."""
import math
from typing import List, Tuple

from mmengine.dist import broadcast
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from ...layers.self_grouping import pruned_fractions, self_grouped_layers
from ...registry import HOOKS
from ...utils.checks import check_positive_int

SCHEMES = ('local_global', 'global')
#: Ratios equal within this are the same stage.
_EPS = 1e-6


@HOOKS.register_module()
class SelfGroupingHook(Hook):
    """Groups every self-grouped conv and FC of the model
    (:class:`~mmlgc.layers.self_grouping.SelfGroupedConv2d`,
    :class:`~mmlgc.layers.self_grouping.SelfGroupedLinear`) progressively to
    the target pruned fractions, "Conv-60/FC-60" style.

    Stages: ``step``, ``2·step``, ... up to the larger target; stage ``s``
    groups the convs to ``min(s·step, conv_ratio)`` and the FC layers to
    ``min(s·step, fc_ratio)`` (a layer at its target is not re-grouped: the
    reference stops grouping the FC at 60 % while the convs go on). Each
    stage re-clusters with the already pruned connections at 0.

    Schemes (the paper's two, which it finds comparable):

    * ``'local_global'``: stage ``s`` is applied at the start of epoch
      (``by_epoch``) or iteration ``(s - 1)·interval`` and fine-tuned
      ("local") until the next; after the last stage the rest of training
      is the "global" fine-tune. The reference restarts its lr at every
      stage; here the lr follows the config's ``param_scheduler`` (the
      recipes keep it constant through the local stages).
    * ``'global'``: every stage is applied back to back before the first
      iteration, then the whole run is the global fine-tune.

    Resume: each layer's masks and ``grouped_ratio`` are persistent buffers,
    so a checkpoint holds the stage reached; the hook derives what is due
    from ``runner.epoch``/``runner.iter`` and applies only stages the
    layers have not reached. The same holds for a run started
    (``load_from`` / ``init_cfg``) from a grouped checkpoint.

    Clusters are deterministic: layer ``n`` (module order) at stage ``s``
    uses seed ``seed + 1000·s + n``; in a distributed run rank 0's masks
    are broadcast.

    Args:
        conv_ratio: target pruned fraction of the convs' connections.
        fc_ratio: the FC layers' (None: as ``conv_ratio``; 0: not grouped).
        step: increment of the progressive schedule (0.1 in SG-CNN).
        groups: clusters per layer (16).
        scheme: ``'local_global'`` or ``'global'``.
        interval: local fine-tuning length per stage, in epochs
            (``by_epoch``) or iterations.
        by_epoch: unit of ``interval``.
        seed: base seed of the k-means.
    """

    priority = 'NORMAL'

    def __init__(self,
                 conv_ratio: float = 0.6,
                 fc_ratio=None,
                 step: float = 0.1,
                 groups: int = 16,
                 scheme: str = 'local_global',
                 interval: int = 1,
                 by_epoch: bool = True,
                 seed: int = 0):
        fc_ratio = conv_ratio if fc_ratio is None else fc_ratio
        for name, value in (('conv_ratio', conv_ratio),
                            ('fc_ratio', fc_ratio)):
            if not 0 <= value < 1:
                raise ValueError(f'SelfGroupingHook: {name}={value!r} must '
                                 'be in [0, 1)')
        if not conv_ratio and not fc_ratio:
            raise ValueError('SelfGroupingHook: conv_ratio=0 and fc_ratio=0 '
                             'leave nothing to group')
        if not 0 < step < 1:
            raise ValueError(f'SelfGroupingHook: step={step!r} must be in '
                             '(0, 1)')
        if scheme not in SCHEMES:
            raise ValueError(f'SelfGroupingHook: scheme={scheme!r} must be '
                             f'one of {SCHEMES}')
        check_positive_int('SelfGroupingHook', 'interval', interval)
        check_positive_int('SelfGroupingHook', 'groups', groups)
        self.conv_ratio, self.fc_ratio = conv_ratio, fc_ratio
        self.step, self.groups, self.seed = step, groups, seed
        self.scheme, self.interval, self.by_epoch = scheme, interval, by_epoch
        self.stages = self._stages()
        self._applied = 0  # stages known to be applied (cache)

    def _stages(self) -> List[Tuple[float, float]]:
        count = math.ceil(max(self.conv_ratio, self.fc_ratio) / self.step -
                          _EPS)
        return [(round(min(s * self.step, self.conv_ratio), 6),
                 round(min(s * self.step, self.fc_ratio), 6))
                for s in range(1, count + 1)]

    def due_stages(self, runner) -> int:
        """How many stages should be applied at the current iteration."""
        if self.scheme == 'global':
            return len(self.stages)
        unit = runner.epoch if self.by_epoch else runner.iter
        return min(len(self.stages), unit // self.interval + 1)

    @staticmethod
    def _model(runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(
            runner.model) else runner.model

    def before_train(self, runner) -> None:
        layers = list(self_grouped_layers(self._model(runner)))
        if not layers:
            raise RuntimeError(
                'SelfGroupingHook: the model has no self-grouped layer '
                "(use type='mmlgc.SGCNNResNet' and/or "
                "'mmlgc.SelfGroupedLinearClsHead')")
        self._applied = 0
        self._apply_due(runner)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._apply_due(runner)

    def _apply_due(self, runner) -> None:
        due = self.due_stages(runner)
        if due <= self._applied:
            return
        model = self._model(runner)
        for stage in range(self._applied + 1, due + 1):
            if self.apply_stage(model, stage):
                print_log(
                    f'SelfGroupingHook: stage {stage}/{len(self.stages)} '
                    f'(conv {self.stages[stage - 1][0]:.0%}, FC '
                    f'{self.stages[stage - 1][1]:.0%}) at epoch '
                    f'{runner.epoch}, iteration {runner.iter}; pruned: ' +
                    ', '.join(f'{k} {v:.1%}' for k, v in
                              pruned_fractions(model).items()),
                    logger='current')
        self._applied = due

    def apply_stage(self, model: nn.Module, stage: int) -> bool:
        """Group every layer not yet at stage ``stage``'s ratio; returns
        whether any was grouped."""
        conv_ratio, fc_ratio = self.stages[stage - 1]
        grouped = False
        for index, (_, layer) in enumerate(self_grouped_layers(model)):
            ratio = fc_ratio if isinstance(layer, nn.Linear) else conv_ratio
            if not ratio or float(layer.grouped_ratio) >= ratio - _EPS:
                continue
            layer.regroup(ratio, self.groups, self.seed + 1000 * stage +
                          index)
            # Identical on every rank already (same weights, same seed);
            # the broadcast makes it certain. No-op undistributed.
            broadcast(layer.mask, 0)
            grouped = True
        return grouped
