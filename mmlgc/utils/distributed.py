"""Distributed configs on machines without a GPU (the config side).

mmdet's runtime (``default_runtime.py``) asks for the ``nccl`` backend, and
mmengine 0.10.7 assumes a GPU per process: ``init_dist`` calls
``torch.cuda.set_device(LOCAL_RANK)`` and the Runner wraps the model in DDP
with ``device_ids=[LOCAL_RANK]``, both of which fail without CUDA. So
``tools/dist_train.sh CONFIG 2`` cannot run on a CPU machine as is.
:func:`setup_cpu_distributed` is the one place that adapts a distributed
config to a CPU-only machine (and logs every change); with a GPU it does
nothing. It names mmlgc's components by type string
(``mmlgc.CPUDistributedDataParallel`` in :mod:`mmlgc.engine.distributed`,
``mmlgc.AllReduceSyncBN``), so it imports neither.
"""
import gc
import os
from typing import Any, List
from unittest import mock

import torch
from mmengine.dist import init_dist, is_distributed
from mmengine.logging import print_log

# What the CPU fallback substitutes: norm types that only run on a GPU.
CPU_SYNC_NORM = 'mmlgc.AllReduceSyncBN'
_GPU_ONLY_SYNC_NORMS = ('SyncBN', 'MMSyncBN')


def _log(msg: str) -> None:
    # Before the process group exists every rank thinks it is rank 0.
    if os.environ.get('RANK', '0') == '0':
        print_log(msg, logger='current')


def _replace_sync_norms(node: Any, replaced: List[str]) -> None:
    if isinstance(node, dict):
        if node.get('type') in _GPU_ONLY_SYNC_NORMS:
            replaced.append(node['type'])
            node['type'] = CPU_SYNC_NORM
        for value in node.values():
            _replace_sync_norms(value, replaced)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _replace_sync_norms(value, replaced)


def setup_cpu_distributed(cfg) -> None:
    """Adapt a distributed config (``cfg.launcher`` not ``'none'``) to a
    machine without CUDA, in place, then start the process group:

    * backend ``nccl`` (mmdet's default) -> ``gloo``;
    * the model wrapper -> :class:`mmlgc.engine.CPUDistributedDataParallel` (same
      ``find_unused_parameters``, ``broadcast_buffers=False`` as the Runner's
      default), unless the config names its own;
    * ``SyncBN`` norms (torch's ``nn.SyncBatchNorm`` refuses CPU tensors) ->
      :class:`mmlgc.layers.AllReduceSyncBatchNorm`, the same statistics;
    * the process group is initialised here, as mmengine's ``init_dist``
      would, minus its ``torch.cuda.set_device``; the Runner then finds it
      initialised and uses it.

    A no-op undistributed or with a GPU. Called by :func:`load_config`, i.e.
    by ``tools/train.py`` and ``tools/test.py``.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    backend = dist_cfg.get('backend', 'nccl')
    if backend != 'gloo':
        _log(f'No CUDA device: distributed backend {backend!r} -> \'gloo\' '
             '(CPU processes).')
        dist_cfg['backend'] = 'gloo'

    wrapper = cfg.get('model_wrapper_cfg')
    default_wrapper = 'MMDistributedDataParallel'
    if wrapper is None or wrapper.get('type',
                                      default_wrapper) == default_wrapper:
        wrapper = dict(wrapper or {})
        wrapper['type'] = 'mmlgc.CPUDistributedDataParallel'
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters',
                           cfg.get('find_unused_parameters', False))
        cfg.model_wrapper_cfg = wrapper

    replaced: List[str] = []
    _replace_sync_norms(cfg.get('model'), replaced)
    if replaced:
        _log(f'No CUDA device: {len(replaced)} SyncBN norm config(s) -> '
             f'{CPU_SYNC_NORM} (nn.SyncBatchNorm needs a GPU).')

    if not is_distributed():
        # mmengine pins each process to a GPU before init_process_group.
        with mock.patch.object(torch.cuda, 'set_device', lambda device: None):
            init_dist(launcher, **dist_cfg)


def release_process_group() -> None:
    """Destroy the default process group, if any, before the interpreter
    exits. Gloo's worker threads may still hold tensors when a process ends
    without it, and their clean-up during interpreter shutdown can abort the
    process (SIGABRT, "terminate called without an active exception") after
    its work is done, failing the launcher. mmengine's Runner leaves the
    group alive, so the tools release it when their run ends -- after
    dropping their runner: its DDP wrapper holds the group too, and a runner
    is freed only by the cyclic garbage collector (it references itself), so
    the collection here, not the interpreter's shutdown, ends the group's
    threads."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        gc.collect()

