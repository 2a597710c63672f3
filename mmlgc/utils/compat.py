"""What the pinned stack needs to work at all: applied on ``import mmlgc``.

Each fix is idempotent and has a test in ``tests/test_compat.py`` that fails
without it; ``tests/test_import_side_effects.py`` asserts that importing
mmlgc changes nothing else in mmengine.

1. torch >= 2.6 loads with ``weights_only=True`` by default. mmengine 0.10.7
   calls ``torch.load`` without the argument, and its checkpoints hold more
   than tensors (``HistoryBuffer``, numpy scalars, the config, ...), so
   ``--resume``, ``load_from`` and ``init_cfg=dict(type='Pretrained')`` fail.
   The fix restores the behaviour mmengine was written for, only inside
   mmengine's checkpoint loaders: their module-level ``torch`` is replaced by a
   view of torch whose ``load`` defaults to ``weights_only=False``. Everything
   else in the process keeps torch's safe default. As before torch 2.6, load
   only checkpoints you trust. This stays on import: without it mmengine
   cannot read the checkpoints it writes itself, on any path (a Runner's,
   ``load_checkpoint`` called by a tool or a user, mmdet's own tools), so
   there is no behaviour of mmengine 0.10.7 on this torch to keep.
2. mmengine 0.10.7 resolves ``mmdet::``/``mmpretrain::`` config bases with
   ``pkg_resources``, which setuptools 82 removed; without it the failure is an
   opaque ImportError deep in ``Config.fromfile``. ``check_stack`` turns it into
   a clear message, as it does for an mmcv without compiled ops or one that
   mmdet 3.3 rejects. It only reads; it changes nothing.

Nothing else is changed on import. What mmlgc adds to mmengine's behaviour
is a registered component that a config selects (mmlgc's own configs select
them all; see docs/reliability.md), so a plain mmdet or mmpretrain config
with ``custom_imports=dict(imports=['mmlgc'])`` runs mmengine's own loop,
hooks, averaging, file writes and checkpoint loading:

* ``train_cfg=dict(type='mmlgc.ExactResumeEpochBasedTrainLoop')``: a
  mid-epoch checkpoint resumes at the batch it stopped before;
* ``default_hooks.random_state=dict(type='mmlgc.RandomStateHook')``: the
  random generator states in every checkpoint;
* ``default_hooks.checkpoint=dict(type='mmlgc.AtomicCheckpointHook')``:
  checkpoints and ``last_checkpoint`` written atomically
  (file backend ``'mmlgc_atomic_local'``);
* ``default_hooks.checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook')``:
  clear errors for bad checkpoints (``mmlgc.utils.checkpoint_checks``);
* ``EMAHook(ema_type='mmlgc.ExponentialMovingAverage')`` (and the other
  averaged models in ``mmlgc.engine.averaged_models``): discrete state
  copied, not averaged.

mmlgc's ``tools/train.py`` and ``tools/test.py`` also enable the checkpoint
checks and atomic local writes for every config they run, and log it.

numpy 2.4 removed names (``np.in1d``, ``np.float``) that a few mm* modules use
off the detection and classification paths (retrieval metrics, pixel_group);
numpy is pinned to the verified 2.4.6 and the paths mmlgc uses are tested.
"""
import functools
import importlib
import importlib.util
import types

import torch

# mmengine modules whose module-level ``torch.load`` reads checkpoints.
# (``http://`` URLs go through torch.hub, whose default is already False.)
_CHECKPOINT_LOADER_MODULES = ('mmengine.runner.checkpoint', )


class _TrustedCheckpointTorch(types.ModuleType):
    """``torch`` as seen by mmengine's checkpoint loaders: identical, except
    that ``load`` defaults to ``weights_only=False``."""

    def __init__(self):
        super().__init__('torch')

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    @functools.wraps(torch.load)
    def load(*args, weights_only=False, **kwargs):
        return torch.load(*args, weights_only=weights_only, **kwargs)


def patch_mmengine_checkpoint_loading():
    """Fix 1: make mmengine's checkpoint loaders work on torch >= 2.6."""
    for name in _CHECKPOINT_LOADER_MODULES:
        module = importlib.import_module(name)
        if not isinstance(module.torch, _TrustedCheckpointTorch):
            module.torch = _TrustedCheckpointTorch()


class StackError(RuntimeError):
    """The installed OpenMMLab stack cannot run mmlgc."""


def check_stack():
    """Fix 2: fail early, with the remedy, on a stack mmlgc cannot run on."""
    if importlib.util.find_spec('pkg_resources') is None:
        raise StackError(
            'mmengine 0.10.7 needs pkg_resources to resolve `mmdet::` and '
            '`mmpretrain::` config bases, and setuptools>=82 removed it: '
            'pip install "setuptools<82"')
    import mmcv
    from mmengine.utils import digit_version
    if not digit_version('2.0.0') <= digit_version(
            mmcv.__version__) < digit_version('2.2.0'):
        raise StackError(
            f'mmcv {mmcv.__version__} is installed; mmdet 3.3 needs '
            '2.0.0 <= mmcv < 2.2.0 (mmlgc is tested on 2.1.0).')
    if importlib.util.find_spec('mmcv._ext') is None:
        raise StackError(
            'mmcv is installed without its compiled ops (mmcv-lite or '
            'MMCV_WITH_OPS=0), which mmdet imports: reinstall mmcv 2.1.0 with '
            'ops (`make install`, see README).')


def apply():
    """Apply the fixes above (and nothing else); safe to call more than
    once."""
    check_stack()
    patch_mmengine_checkpoint_loading()
