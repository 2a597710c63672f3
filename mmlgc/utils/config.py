"""Config handling shared by ``tools/train.py`` and ``tools/test.py``."""
import os.path as osp
from typing import Optional

from mmengine.config import Config

from .distributed import setup_cpu_distributed

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def fix_dataloader_workers(cfg: Config) -> None:
    """``persistent_workers=True`` with ``num_workers=0`` is an error in
    torch's DataLoader; on CPU, ``num_workers=0`` is often fastest, so a
    ``--cfg-options *.num_workers=0`` switches persistence off with it."""
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if loader and loader.get('num_workers', 1) == 0:
            loader['persistent_workers'] = False


def load_config(path: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """Load a config as mmdet's and mmpretrain's tools do: merge
    ``--cfg-options``, then the work dir (CLI > config > ``work_dirs/NAME``).
    A distributed ``launcher`` on a machine without CUDA gets the CPU
    fallback (gloo, CPU DDP, SyncBN):
    :func:`mmlgc.utils.distributed.setup_cpu_distributed`.
    """
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    fix_dataloader_workers(cfg)
    setup_cpu_distributed(cfg)
    return cfg


def build_model(cfg: Config, model_cfg: Optional[dict] = None):
    """Build ``model_cfg`` (default ``cfg.model``) in the config's scope
    (``default_scope``: mmdet or mmpretrain), as its Runner would, without
    initialising weights: a top-level ``data_preprocessor`` (mmpretrain's
    configs keep mean, std and channel order there) goes into the model
    unless it has its own, as the Runner does; without it, images reach the
    model unnormalised."""
    from mmengine.registry import DefaultScope, init_default_scope
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model_cfg = (cfg.model if model_cfg is None else model_cfg).copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor',
                             cfg.data_preprocessor.copy())
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(model_cfg)


def pretrained_parts(cfg: Config) -> list:
    """The parts of ``cfg.model`` (``backbone``, ``head``) that initialise
    from a checkpoint (``init_cfg=dict(type='Pretrained', ...)``): where a
    tool that starts a run from another run's checkpoint points them."""
    parts = []
    for part in ('backbone', 'head'):
        init = (cfg.model.get(part) or {}).get('init_cfg') or {}
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            parts.append(part)
    return parts
