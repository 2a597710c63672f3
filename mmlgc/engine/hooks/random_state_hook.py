"""Random generator states in checkpoints, so that ``--resume`` continues
exactly the run it resumes."""
from typing import Optional

from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
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
    ``randomness.seed=None`` the sampler shuffles with a new seed. Enabled
    by default wherever mmlgc is imported (``mmlgc.utils.compat`` adds it to
    the runner's default hooks as ``random_state``; switch it off with
    ``default_hooks=dict(random_state=None)``).

    The states are restored as training starts again (``before_train``,
    highest priority: before any data is loaded); a resume in the middle of
    an epoch skips the finished batches without drawing
    (``mmlgc.utils.exact_resume``). Validation inside
    training leaves the generators as it found them, so an epoch checkpoint
    taken before a validation continues as the run that validated.

    Not restored: the generators of data loader *worker processes*
    (``num_workers > 0``), which live in processes that end with the run; a
    resumed run's workers start from their seeds.
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        self._resumed: Optional[dict] = None  # the loaded checkpoint's meta
        self._state_before_val: Optional[dict] = None

    @staticmethod
    def _train_sampler(runner):
        loop = runner.train_loop
        loader = getattr(loop, 'dataloader', None)
        return getattr(loader, 'sampler', None)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Collective: every rank reaches here (Runner.save_checkpoint), rank
        # 0 writes the file.
        checkpoint['meta'][RANDOM_STATE_KEY] = all_gather_object(
            get_random_state())
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
