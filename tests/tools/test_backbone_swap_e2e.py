"""A backbone-only swap trained with mmdet's and mmpretrain's own
``tools/train.py`` trains the method (issue 21): a user's config that
changes nothing but ``backbone.type`` (plus ``custom_imports``) logs MSGC's
budget or DGC's saliency loss and MAC ratio, follows the paper's schedule,
and continues it across ``--resume``. Multi-process: ``test_distributed``'s
MSGC runs use the backbone's own budget too.

Slow (about two minutes): marked ``slow``; CI runs it.
"""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import REPO, data_options

pytestmark = pytest.mark.slow

EPOCHS = 2
ITERS_PER_EPOCH = 4  # 16 tiny training images at batch 4


def upstream_tool(package):
    """``tools/train.py`` as installed with mmdet / mmpretrain."""
    module = __import__(package)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'tools',
                    'train.py')
    assert osp.isfile(path), path
    return path


def swapped_config(tmp_path, base, backbone_type):
    """A user's config: ``base`` with only the backbone's type changed."""
    path = tmp_path / f'swap_{backbone_type}_{osp.basename(base)}'
    path.write_text(
        f"_base_ = '{osp.join(REPO, base)}'\n"
        "custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)\n"
        f"model = dict(backbone=dict(type='mmlgc.{backbone_type}'))\n")
    return str(path)


def train(package, config, work_dir, *options):
    result = subprocess.run(
        [sys.executable, upstream_tool(package), config, '--work-dir',
         work_dir, *options], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout + result.stderr


def logged(work_dir, key):
    """``{iteration: value}`` of ``key`` from a run's scalar logs."""
    values = {}
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data',
                                   'scalars.json')):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if key in record:
                    values[record['iter']] = record[key]
    return values


def detector_options(tiny_shapes, pretrained_backbone, *extra):
    return [
        '--cfg-options', f'train_cfg.max_epochs={EPOCHS}',
        f'train_cfg.val_interval={EPOCHS}', 'train_dataloader.batch_size=4',
        'default_hooks.logger.interval=1',
        f'model.backbone.init_cfg.checkpoint={pretrained_backbone}', *extra,
        *data_options(tiny_shapes, 'det', two_stage=True)
    ]


@pytest.fixture(scope='module')
def msgc_run(tmp_path_factory, tiny_shapes, pretrained_backbone):
    tmp_path = tmp_path_factory.mktemp('swap_msgc')
    config = swapped_config(tmp_path, 'configs/faster_rcnn_r18_shapes.py',
                            'MSGCResNet')
    work_dir = str(tmp_path / 'work')
    out = train('mmdet', config, work_dir,
                *detector_options(tiny_shapes, pretrained_backbone))
    return config, work_dir, out


def test_mmdet_train_swap_trains_msgc_budget(msgc_run):
    _, work_dir, out = msgc_run
    assert 'MSGCResNet trains with its default MAC budget' in out
    targets = logged(work_dir, 'macs_target')
    total = EPOCHS * ITERS_PER_EPOCH
    assert sorted(targets) == list(range(1, total + 1))
    for it, target in targets.items():  # 1 -> 0.5 over the first half
        progress = (it - 1) / total
        assert target == pytest.approx(1 - min(progress / 0.5, 1) * 0.5,
                                       abs=1e-6), it
    assert set(logged(work_dir, 'loss_budget')) == set(targets)
    assert all(0 < r <= 1 for r in logged(work_dir, 'macs_ratio').values())


def test_mmdet_train_resume_continues_the_schedule(msgc_run, tmp_path,
                                                   tiny_shapes,
                                                   pretrained_backbone):
    config, work_dir, _ = msgc_run
    resumed_dir = str(tmp_path / 'resumed')
    train('mmdet', config, resumed_dir, '--resume',
          osp.join(work_dir, 'epoch_1.pth'),
          *detector_options(tiny_shapes, pretrained_backbone))
    resumed, full = (logged(resumed_dir, 'macs_target'),
                     logged(work_dir, 'macs_target'))
    first = ITERS_PER_EPOCH + 1
    assert sorted(resumed) == list(range(first, EPOCHS * ITERS_PER_EPOCH + 1))
    for it, target in resumed.items():  # not restarted at 1
        assert target == pytest.approx(full[it], abs=1e-9), it


def test_mmdet_train_swap_trains_dgc_schedule(tmp_path, tiny_shapes,
                                              pretrained_backbone):
    config = swapped_config(tmp_path, 'configs/faster_rcnn_r18_shapes.py',
                            'DGCResNet')
    work_dir = str(tmp_path / 'work')
    out = train('mmdet', config, work_dir,
                *detector_options(tiny_shapes, pretrained_backbone))
    assert 'DGCResNet trains with its default pruning schedule' in out
    total = EPOCHS * ITERS_PER_EPOCH
    assert sorted(logged(work_dir, 'loss_saliency')) == list(
        range(1, total + 1))
    ratios = logged(work_dir, 'macs_ratio')
    assert ratios[total] < ratios[1]  # pruning ramps up (1/12 -> 3/4)
    state = torch.load(osp.join(work_dir, f'epoch_{EPOCHS}.pth'),
                       weights_only=False)['state_dict']
    pruned = [v for k, v in state.items() if k.endswith('pruned_channels')]
    assert pruned and all(int(k) > 0 for k in pruned)


def test_mmpretrain_train_swap_trains_msgc_budget(tmp_path, tiny_shapes):
    config = swapped_config(tmp_path, 'configs/pretrain/resnet18_shapes.py',
                            'MSGCResNet')
    work_dir = str(tmp_path / 'work')
    out = train('mmpretrain', config, work_dir, '--cfg-options',
                'train_cfg.max_epochs=1', 'train_dataloader.batch_size=16',
                'default_hooks.logger.interval=1',
                *data_options(tiny_shapes, 'cls'))
    assert 'MSGCResNet trains with its default MAC budget' in out
    targets = logged(work_dir, 'macs_target')
    assert targets and targets[min(targets)] == 1.0
    assert set(logged(work_dir, 'loss_budget')) == set(targets)
