"""FLGC end to end through the tools, as the demo runs it on the tiny shapes
set: FLGC pretraining from a dense checkpoint (mmpretrain; the logits are
all it lacks, the assignments move and the hook says so), FLGC RetinaNet
(mmdet), ``tools/test.py``, ``tools/deploy.py`` (ragged group convs: the
deployed model predicts what the trained one does).

Slow (minutes): marked ``slow``.
"""
import glob
import json
import os.path as osp

import pytest
import torch
from helpers import assert_same_detections, data_options

pytestmark = pytest.mark.slow

DETECTOR = 'configs/flgc_retinanet_r18_shapes.py'


@pytest.fixture(scope='module')
def flgc_backbone(tmp_path_factory, tiny_shapes, run_tool,
                  pretrained_backbone):
    work_dir = str(tmp_path_factory.mktemp('flgc_pretrain'))
    result = run_tool(
        'tools/train.py', 'configs/pretrain/flgc_resnet18_shapes.py',
        '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_epochs=1',
        'train_dataloader.batch_size=8', 'default_hooks.logger.interval=1',
        f'model.backbone.init_cfg.checkpoint={pretrained_backbone}',
        *data_options(tiny_shapes, 'cls'))
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    # The dense checkpoint lacks only the logits of the 16 FLGC convs.
    assert 'no group assignment logits for 16 FLGC convs' in log
    assert 'FLGC assignments moved during training' in log
    (scalars, ) = glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json'))
    with open(scalars) as f:
        moved = [json.loads(line)['flgc_moved'] for line in f
                 if 'flgc_moved' in line]
    assert moved and moved[-1] > 0  # 8 iterations moved some groups
    return osp.join(work_dir, 'epoch_1.pth')


def test_detector_trains_tests_and_deploys(flgc_backbone, tmp_path,
                                           tiny_shapes, run_tool):
    data = data_options(tiny_shapes, 'det')
    work_dir = str(tmp_path / 'train')
    result = run_tool(
        'tools/train.py', DETECTOR, '--work-dir', work_dir, '--cfg-options',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'train_dataloader.batch_size=4', 'randomness.seed=0',
        f'model.backbone.init_cfg.checkpoint={flgc_backbone}', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = osp.join(work_dir, 'epoch_1.pth')

    trained_out = str(tmp_path / 'trained.pkl')
    result = run_tool('tools/test.py', DETECTOR, checkpoint, '--work-dir',
                      str(tmp_path / 'test'), '--out', trained_out,
                      '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]

    deployed = str(tmp_path / 'deploy' / 'flgc_retinanet.pth')
    result = run_tool('tools/deploy.py', DETECTOR, checkpoint, deployed)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(deployed, weights_only=False)['state_dict']
    assert 'backbone.layer2.0.conv1.in_index' in state  # ragged
    assert not any('group_logits' in k for k in state)
    deployed_out = str(tmp_path / 'deployed.pkl')
    result = run_tool('tools/test.py', osp.splitext(deployed)[0] + '.py',
                      deployed, '--work-dir', str(tmp_path / 'test_deployed'),
                      '--out', deployed_out, '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_detections(trained_out, deployed_out)
