"""Test helpers for ``tests/engine/test_distributed.py``, imported by the training
processes through ``custom_imports`` (``tests/engine/`` on ``PYTHONPATH``).

* :class:`RankProbeHook` writes, per rank, ``probe_rank<R>.json`` into the
  work dir: every iteration's logged losses (mmengine logs rank 0's only),
  the DGC-G thresholds and the running statistics of the synced norms at the
  end of training, and the files this rank wrote (checkpoints).
* Randomness whose stream depends on how a batch is split over ranks is made
  a function of the image alone, so one process with batch 4 and two with
  batch 2 compute the same thing: :class:`ImageSeededRandomSampler` (RPN and
  R-CNN sampling seeded by the image's boxes) and, by the hook, MSGC's gate
  noise fixed at its median (``u = 1/2``, logistic noise 0; the gate stays a
  straight-through hard threshold of the generator's logits).
"""
import json
import os
import os.path as osp

import torch
from mmdet.models.task_modules.samplers import RandomSampler
from mmdet.registry import TASK_UTILS
from mmengine.dist import get_rank
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mmlgc.layers import BinaryConcreteGate, DGCConv
from mmlgc.utils.io import AtomicLocalBackend


@TASK_UTILS.register_module()
class ImageSeededRandomSampler(RandomSampler):
    """mmdet's ``RandomSampler`` drawing from a generator seeded by the
    image's ground truth, not from the global stream (whose position depends
    on the images processed before on this rank)."""

    def sample(self, assign_result, pred_instances, gt_instances, **kwargs):
        boxes = gt_instances.bboxes.detach().double()
        seed = int((boxes * 1000).sum().item()) % (2**31)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return super().sample(assign_result, pred_instances,
                                  gt_instances, **kwargs)


class MedianNoiseGate(BinaryConcreteGate):
    """The binary-concrete gate with its logistic noise at the median, 0."""

    def forward(self, logits):
        if not self.training:
            return super().forward(logits)
        soft = torch.sigmoid(logits / self.tau)
        hard = (soft >= 0.5).to(logits.dtype)
        return hard - soft.detach() + soft


@HOOKS.register_module()
class RankProbeHook(Hook):
    priority = 'VERY_LOW'

    def __init__(self):
        self.record = dict(losses=[], writes=[])

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_run(self, runner):
        record = self.record
        # mmengine's backend and the atomic one (mmlgc's configs and tools).
        for backend_cls in (LocalBackend, AtomicLocalBackend):
            put = backend_cls.__dict__['put']

            def recording_put(backend, obj, filepath, put=put):
                record['writes'].append(osp.basename(str(filepath)))
                return put(backend, obj, filepath)

            backend_cls.put = recording_put
        for module in self._model(runner).modules():
            if type(module) is BinaryConcreteGate:
                module.__class__ = MedianNoiseGate

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        logged = {k: float(torch.as_tensor(v).detach())
                  for k, v in (outputs or {}).items()}
        # After DDP's gradient averaging (OptimWrapper's clip_grad logs it).
        hub = runner.message_hub
        if 'train/grad_norm' in hub.log_scalars:
            logged['grad_norm'] = float(
                hub.get_scalar('train/grad_norm').current())
        self.record['losses'].append(logged)

    def after_train(self, runner):
        model = self._model(runner)
        self.record['thresholds'] = {
            name: float(m.threshold)
            for name, m in model.named_modules() if isinstance(m, DGCConv)
        }
        self.record['sync_norms'] = {
            name: dict(mean=m.running_mean.tolist(),
                       var=m.running_var.tolist(),
                       type=type(m).__name__)
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        }

    def after_run(self, runner):
        path = osp.join(runner.work_dir, f'probe_rank{get_rank()}.json')
        os.makedirs(runner.work_dir, exist_ok=True)
        with open(path, 'w') as f:
            json.dump(self.record, f)
