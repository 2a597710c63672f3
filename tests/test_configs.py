"""Every config under configs/ (but _base_) loads, builds its model and runs a
training step's loss and a prediction on a tiny batch."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from torch.nn.modules.batchnorm import _BatchNorm

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p)


def test_configs_are_found():
    assert 'configs/retinanet_r18_shapes.py' in CONFIGS
    assert 'configs/pretrain/resnet18_shapes.py' in CONFIGS


def _batch(scope, size=1):
    from mmengine.structures import InstanceData
    img = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        sample = DetDataSample(
            metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64),
                          ori_shape=(64, 64), scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[8., 10., 40., 44.]]),
            labels=torch.tensor([2]))
    else:
        from mmpretrain.structures import DataSample
        sample = DataSample().set_gt_label(2)
    return dict(inputs=[img] * size, data_samples=[sample] * size)


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_and_runs(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    scope = cfg.default_scope
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model_cfg = cfg.model
    if 'data_preprocessor' in cfg and 'data_preprocessor' not in model_cfg:
        model_cfg.data_preprocessor = cfg.data_preprocessor
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(model_cfg)  # init_cfg is not applied
        model.train()  # as mmengine's train loop does (applies norm_eval)
        # Two images: generator BNs on pooled vectors need > 1 per batch in
        # training mode (mmpretrain configs; detection ones freeze them).
        if scope == 'mmpretrain':  # pretraining trains every BN
            frozen = [n for n, m in model.named_modules()
                      if isinstance(m, _BatchNorm) and not m.training]
            assert not frozen, f'BN in eval mode while training: {frozen}'
        data = model.data_preprocessor(_batch(scope, 2), True)
        total, _ = model.parse_losses(model(**data, mode='loss'))
        assert total.requires_grad and torch.isfinite(total)
        total.backward()
        model.eval()
        with torch.no_grad():
            preds = model(**model.data_preprocessor(_batch(scope), False),
                          mode='predict')
    assert len(preds) == 1


RUNTIME = {
    'mmlgc.ExactResumeEpochBasedTrainLoop', 'mmlgc.AtomicCheckpointHook',
    'mmlgc.RandomStateHook', 'mmlgc.CheckpointChecksHook'
}


@pytest.mark.parametrize('config', CONFIGS)
def test_config_selects_mmlgcs_runtime(config):
    """What importing mmlgc no longer does for every config, each of
    mmlgc's configs asks for (docs/reliability.md)."""
    from mmlgc.utils.runtime import runtime_components
    cfg = Config.fromfile(osp.join(REPO, config))
    assert RUNTIME <= set(runtime_components(cfg))
    # mmengine's Runner refuses a loop `type` beside `by_epoch`.
    assert 'by_epoch' not in cfg.train_cfg
    assert cfg.default_hooks.checkpoint.get('interval', 1) >= 1
