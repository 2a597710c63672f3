"""Every fix the pinned stack needs, in one place; applied on ``import mmlgc``.

Each fix is idempotent and has a test in ``tests/test_compat.py`` that fails
without it.

1. torch >= 2.6 loads with ``weights_only=True`` by default. mmengine 0.10.7
   calls ``torch.load`` without the argument, and its checkpoints hold more
   than tensors (``HistoryBuffer``, numpy scalars, the config, ...), so
   ``--resume``, ``load_from`` and ``init_cfg=dict(type='Pretrained')`` fail.
   The fix restores the behaviour mmengine was written for, only inside
   mmengine's checkpoint loaders: their module-level ``torch`` is replaced by a
   view of torch whose ``load`` defaults to ``weights_only=False``. Everything
   else in the process keeps torch's safe default. As before torch 2.6, load
   only checkpoints you trust.
2. mmengine 0.10.7 resolves ``mmdet::``/``mmpretrain::`` config bases with
   ``pkg_resources``, which setuptools 82 removed; without it the failure is an
   opaque ImportError deep in ``Config.fromfile``. ``check_stack`` turns it into
   a clear message, as it does for an mmcv without compiled ops or one that
   mmdet 3.3 rejects.
3. mmengine reports bad checkpoints with miniz/pickle internals (truncated,
   empty), not at all (a corrupt tensor payload), or only as a warning after
   which training runs from random weights (a checkpoint of another
   architecture or depth, through ``load_from`` or ``Pretrained``).
   ``mmlgc.utils.checkpoint_checks`` makes each a clear error naming the
   file or the keys and shapes that disagree (tests in
   ``tests/test_checkpoint_errors.py``).
4. mmengine 0.10.7 does not resume a run exactly: it saves no random
   generator states (a resumed run draws other gate noise and augmentation)
   and its ``EpochBasedTrainLoop`` restarts an epoch resumed from a
   mid-epoch checkpoint. ``mmlgc.utils.exact_resume`` adds
   :class:`mmlgc.engine.RandomStateHook` to every runner's default hooks and
   skips the finished batches (tests in ``tests/test_resume.py``).
5. mmengine's model averaging (``EMAHook``) averages binary masks and
   assignment logits and never updates integer buffers after its first step:
   ``mmlgc.utils.model_averaging`` copies each layer's declared
   ``discrete_state`` and every non-floating tensor instead (tests in
   ``tests/test_ema.py``).
6. mmengine writes local files in place (``LocalBackend.put``): a run killed
   or a disk filling up while ``save_checkpoint`` writes leaves a truncated
   checkpoint, over the previous one if it had the same name
   (``best_*.pth``, a re-run). ``mmlgc.utils.io.patch_mmengine_local_writes``
   writes them to a temporary file and renames it, ``last_checkpoint``
   (which ``CheckpointHook`` writes after the checkpoint) too.

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
    """Apply every fix; safe to call more than once."""
    from . import exact_resume, io, model_averaging
    from .checkpoint_checks import patch_mmengine_checkpoint_checks
    check_stack()
    patch_mmengine_checkpoint_loading()
    exact_resume.patch_default_hooks()
    exact_resume.patch_epoch_loop_resume()
    model_averaging.patch_model_averaging()
    io.patch_mmengine_local_writes()
    patch_mmengine_checkpoint_checks()
