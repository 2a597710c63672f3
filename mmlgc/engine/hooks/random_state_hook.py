"""Random generator states in checkpoints, so that ``--resume`` continues
exactly the run it resumes."""
import logging
from typing import Optional

from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log

from ...registry import HOOKS
from ...utils.random_state import get_random_state, set_random_state

#: Keys in the checkpoint's ``meta``.
RANDOM_STATE_KEY = 'random_states'
SAMPLER_SEED_KEY = 'sampler_seed'


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Saves every rank's global random generator states (python, numpy,
    torch CPU/CUDA) and the train sampler's seed in each checkpoint, and a
    resumed run continues from them.

    mmengine 0.10.7 saves neither: a resumed run re-seeds its generators at
    the start, so MSGC's gate noise, dropout and the data augmentation of
    every later iteration differ from the uninterrupted run, and with
    ``randomness.seed=None`` the sampler shuffles with a new seed. mmlgc's
    configs select it as the default hook ``random_state``
    (``default_hooks=dict(random_state=dict(type='mmlgc.RandomStateHook'))``;
    ``random_state=None`` in a derived config switches it off).

    The states are restored as training starts again (``before_train``,
    highest priority: before any data is loaded); a resume in the middle of
    an epoch skips the finished batches without drawing
    (:class:`mmlgc.engine.ExactResumeEpochBasedTrainLoop`). Validation inside
    training leaves the generators as it found them, so an epoch checkpoint
    taken before a validation continues as the run that validated.

    With several processes, the states are gathered from every rank (a
    collective) at each epoch end and at each iteration end where an
    iteration-based ``CheckpointHook`` saves: mmengine calls
    ``before_save_checkpoint`` on rank 0 only, where no collective can run.

    Not restored: the generators of data loader *worker processes*
    (``num_workers > 0``), which live in processes that end with the run; a
    resumed run's workers start from their seeds.
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        self._resumed: Optional[dict] = None  # the loaded checkpoint's meta
        self._state_before_val: Optional[dict] = None
        # Every rank's states, gathered at iteration ``_gathered_iter``.
        self._gathered: Optional[list] = None
        self._gathered_iter: Optional[int] = None

    @staticmethod
    def _train_sampler(runner):
        loop = runner.train_loop
        loader = getattr(loop, 'dataloader', None)
        return getattr(loader, 'sampler', None)

    def _gather(self, runner) -> None:
        self._gathered = all_gather_object(get_random_state())
        self._gathered_iter = runner.iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if get_world_size() > 1 and any(
                hook.every_n_train_iters(runner, hook.interval,
                                         hook.save_begin)
                or (hook.save_last and hook.is_last_train_iter(runner))
                for hook in runner.hooks
                if isinstance(hook, CheckpointHook) and not hook.by_epoch):
            self._gather(runner)

    def after_train_epoch(self, runner) -> None:
        # Every epoch, not only where a checkpoint is due: ``save_best``
        # checkpoints follow the validation of any epoch.
        if get_world_size() > 1:
            self._gather(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Rank 0 only (Runner.save_checkpoint is master_only).
        if get_world_size() == 1:
            states = [get_random_state()]
        elif self._gathered_iter == runner.iter:
            states = self._gathered
        else:
            states = None
            print_log(
                f'RandomStateHook: no random states of the {get_world_size()} '
                f'processes were gathered at iteration {runner.iter}: this '
                'checkpoint holds none, and a run resumed from it draws '
                'differently from this one.', logger='current',
                level=logging.WARNING)
        if states is not None:
            checkpoint['meta'][RANDOM_STATE_KEY] = states
        seed = getattr(self._train_sampler(runner), 'seed', None)
        if seed is not None:
            checkpoint['meta'][SAMPLER_SEED_KEY] = seed

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Runner.load_checkpoint calls this for `load_from` as well, which
        # starts a new run: the states apply only if the run continues the
        # checkpoint's iteration (Runner.resume sets it after this call).
        self._resumed = checkpoint.get('meta', {})

    def before_train(self, runner) -> None:
        meta, self._resumed = self._resumed, None
        if meta is None or meta.get('iter') != runner.iter or not runner.iter:
            return
        sampler = self._train_sampler(runner)
        if SAMPLER_SEED_KEY in meta and hasattr(sampler, 'seed'):
            sampler.seed = meta[SAMPLER_SEED_KEY]
        states = meta.get(RANDOM_STATE_KEY)
        if states is None:
            print_log(
                'RandomStateHook: the checkpoint holds no random states '
                '(written without mmlgc): the resumed run draws differently '
                'from the interrupted one.', logger='current')
        elif len(states) != get_world_size():
            print_log(
                f'RandomStateHook: the checkpoint holds the random states of '
                f'{len(states)} processes, this run has {get_world_size()}: '
                'not restored.', logger='current')
        else:
            set_random_state(states[get_rank()])

    def before_val(self, runner) -> None:
        self._state_before_val = get_random_state()

    def after_val(self, runner) -> None:
        if self._state_before_val is not None:
            set_random_state(self._state_before_val)
            self._state_before_val = None
