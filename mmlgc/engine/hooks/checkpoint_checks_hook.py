"""Clear errors for bad checkpoints in a run whose config asks for them."""
from mmengine.hooks import Hook

from ...registry import HOOKS
from ...utils.checkpoint_checks import enable_checkpoint_checks


@HOOKS.register_module()
class CheckpointChecksHook(Hook):
    """Makes a missing, empty, truncated or corrupt checkpoint, and one of
    another architecture or depth, an error naming the file or the keys and
    shapes that disagree, on every path the run loads one by (``load_from``,
    ``--resume``, ``init_cfg=dict(type='Pretrained')``):
    :mod:`mmlgc.utils.checkpoint_checks`. mmengine 0.10.7 reports these with
    miniz/pickle internals, not at all, or as a warning after which training
    runs from random weights.

    ``before_run`` installs the checks (for the rest of the process: they
    live in mmengine's module-level loaders); the Runner loads weights only
    after it. Select it in a config's ``default_hooks``::

        default_hooks = dict(
            checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        enable_checkpoint_checks()
