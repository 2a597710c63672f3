"""mmengine's ``CheckpointHook`` with every local file it writes written
atomically."""
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from ...registry import HOOKS
from ...utils.io import ATOMIC_LOCAL_BACKEND, atomic_open


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose checkpoints and ``last_checkpoint`` appear
    only complete: a run killed, or a disk filling up, while a checkpoint is
    written leaves the previous files as they were, and ``--resume`` finds
    the last complete checkpoint.

    * Checkpoints: a local ``out_dir`` (the work dir by default) gets
      ``backend_args=dict(backend='mmlgc_atomic_local')``
      (:class:`mmlgc.utils.io.AtomicLocalBackend`) unless the config sets
      ``backend_args`` or ``file_client_args``.
    * ``last_checkpoint``: mmengine writes it with ``open(.., 'w')``, which
      empties it first; killed in that window, the run left an empty file
      that ``--resume`` reads as no checkpoint.

    Same arguments as ``CheckpointHook``; select it with
    ``default_hooks=dict(checkpoint=dict(type='mmlgc.AtomicCheckpointHook'))``.
    """

    def __init__(self, *args, out_dir: Optional[str] = None,
                 file_client_args: Optional[dict] = None,
                 backend_args: Optional[dict] = None, **kwargs):
        if backend_args is None and file_client_args is None and (
                out_dir is None or '://' not in str(out_dir)):
            backend_args = dict(backend=ATOMIC_LOCAL_BACKEND)
        super().__init__(*args, out_dir=out_dir,
                         file_client_args=file_client_args,
                         backend_args=backend_args, **kwargs)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # mmengine 0.10.7's method, except that `last_checkpoint` is written
        # through atomic_open instead of the builtin open.
        if self.max_keep_ckpts > 0:
            if len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step:
                pass
            else:
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    _step = self.keep_ckpt_ids.popleft()
                    if is_main_process():
                        ckpt_path = self.file_backend.join_path(
                            self.out_dir, self.filename_tmpl.format(_step))
                        if self.file_backend.isfile(ckpt_path):
                            self.file_backend.remove(ckpt_path)
                        elif self.file_backend.isdir(ckpt_path):
                            self.file_backend.rmtree(ckpt_path)
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids',
                                               list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)

        if not is_main_process():
            return
        save_file = osp.join(runner.work_dir, 'last_checkpoint')
        with atomic_open(save_file, 'w') as f:
            f.write(self.last_ckpt)
