"""What ``--resume`` needs to continue a run exactly (``mmlgc.utils.compat``,
fix 4).

mmengine 0.10.7 resumes the counters, weights, optimizer and schedulers, but

* saves no random generator states and re-seeds at the start, so every
  random draw after the resume (MSGC's gate noise, augmentation) differs:
  :func:`patch_default_hooks` adds :class:`mmlgc.engine.RandomStateHook`
  to every runner's default hooks (key ``random_state``; ``None`` in the
  config's ``default_hooks`` switches it off);
* restarts an epoch from its first batch when the ``EpochBasedTrainLoop``
  resumes from a checkpoint taken in the middle of it
  (``CheckpointHook(by_epoch=False)``): the finished batches are trained
  twice and the run ends ``iter`` past ``max_iters``.
  :func:`patch_epoch_loop_resume` skips them instead, as mmengine's
  ``IterBasedTrainLoop`` does, without drawing from the generators.
"""
import functools

from mmengine.logging import print_log

from .random_state import preserved_random_state

RANDOM_STATE_HOOK = 'random_state'


def patch_default_hooks() -> None:
    """Every Runner gets ``default_hooks['random_state']``."""
    from mmengine.runner import Runner
    register = Runner.register_default_hooks
    if getattr(register, '_mmlgc_random_state', False):
        return

    @functools.wraps(register)
    def register_default_hooks(self, hooks=None):
        hooks = dict(hooks or {})
        if RANDOM_STATE_HOOK in hooks and hooks[RANDOM_STATE_HOOK] is None:
            hooks.pop(RANDOM_STATE_HOOK)  # switched off by the config
        else:
            hooks.setdefault(RANDOM_STATE_HOOK,
                             dict(type='mmlgc.RandomStateHook'))
        return register(self, hooks)

    register_default_hooks._mmlgc_random_state = True
    Runner.register_default_hooks = register_default_hooks


_original_run_epoch = None


def _run_epoch(self) -> None:
    """``EpochBasedTrainLoop.run_epoch`` that continues a resumed epoch at
    the batch it stopped before."""
    done = self._iter - self._epoch * len(self.dataloader)
    if done == len(self.dataloader):
        # Checkpointed after the epoch's last iteration, before its end.
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
        return
    if not 0 < done < len(self.dataloader):
        return _original_run_epoch(self)
    self.runner.call_hook('before_train_epoch')
    self.runner.model.train()
    # The uninterrupted run created this epoch's iterator and loaded these
    # batches before the checkpoint: their random draws are in its saved
    # states already, so skipping them must not draw again.
    print_log(f'Resuming in the middle of epoch {self._epoch + 1}: skipping '
              f'its {done} finished batches', logger='current')
    with preserved_random_state():
        batches = iter(self.dataloader)
        for _ in range(done):
            next(batches)
    for idx, data_batch in enumerate(batches, start=done):
        self.run_iter(idx, data_batch)
    self.runner.call_hook('after_train_epoch')
    self._epoch += 1


def patch_epoch_loop_resume() -> None:
    global _original_run_epoch
    from mmengine.runner import EpochBasedTrainLoop
    if EpochBasedTrainLoop.run_epoch is _run_epoch:
        return
    _original_run_epoch = EpochBasedTrainLoop.run_epoch
    EpochBasedTrainLoop.run_epoch = _run_epoch
