"""A training loop that resumes a mid-epoch checkpoint exactly."""
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from ..registry import LOOPS
from ..utils.random_state import preserved_random_state


@LOOPS.register_module()
class ExactResumeEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` that continues an epoch resumed
    from a checkpoint taken in its middle at the batch it stopped before.

    mmengine 0.10.7 restarts such an epoch from its first batch
    (``CheckpointHook(by_epoch=False)`` checkpoints mid-epoch): the finished
    batches are trained twice and the run ends ``iter`` past ``max_iters``.
    This loop skips them, as mmengine's ``IterBasedTrainLoop`` does, without
    drawing from the random generators (with
    :class:`mmlgc.engine.RandomStateHook` a resumed run then equals the
    uninterrupted one). Everything else is mmengine's loop.

    Select it with
    ``train_cfg=dict(type='mmlgc.ExactResumeEpochBasedTrainLoop', ...)``
    (mmengine refuses a ``type`` beside ``by_epoch``: over an mmpretrain
    base, whose ``train_cfg`` has ``by_epoch=True``, replace it with
    ``_delete_=True``).
    """

    def run_epoch(self) -> None:
        done = self._iter - self._epoch * len(self.dataloader)
        if done == len(self.dataloader):
            # Checkpointed after the epoch's last iteration, before its end.
            self.runner.call_hook('after_train_epoch')
            self._epoch += 1
            return
        if not 0 < done < len(self.dataloader):
            return super().run_epoch()
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        # The uninterrupted run created this epoch's iterator and loaded these
        # batches before the checkpoint: their random draws are in its saved
        # states already, so skipping them must not draw again.
        print_log(f'Resuming in the middle of epoch {self._epoch + 1}: '
                  f'skipping its {done} finished batches', logger='current')
        with preserved_random_state():
            batches = iter(self.dataloader)
            for _ in range(done):
                next(batches)
        for idx, data_batch in enumerate(batches, start=done):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
