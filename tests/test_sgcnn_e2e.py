"""SG-CNN end to end through the tools, as the demo runs it on the tiny
shapes set: grouping the dense shapes classifier progressively while
fine-tuning (mmpretrain, backbone and FC from the dense checkpoint, the
grouping buffers all they lack), SG-CNN RetinaNet with the masks frozen
(mmdet), ``tools/test.py``, ``tools/deploy.py`` (ragged group convs: the
deployed model predicts what the trained one does).

Slow (minutes): marked ``slow``.
"""
import os.path as osp

import pytest
import torch
from helpers import assert_same_detections, data_options

pytestmark = pytest.mark.slow

DETECTOR = 'configs/sgcnn_retinanet_r18_shapes.py'


@pytest.fixture(scope='module')
def sgcnn_backbone(tmp_path_factory, tiny_shapes, run_tool,
                   pretrained_backbone):
    work_dir = str(tmp_path_factory.mktemp('sgcnn_pretrain'))
    # 64 images at 8 a batch: stages (20, 40, 60%) at iterations 0, 3, 6.
    result = run_tool(
        'tools/train.py', 'configs/pretrain/sgcnn_resnet18_shapes.py',
        '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_epochs=1',
        'train_dataloader.batch_size=8', 'custom_hooks.0.interval=3',
        f'model.backbone.init_cfg.checkpoint={pretrained_backbone}',
        f'model.head.init_cfg.checkpoint={pretrained_backbone}',
        *data_options(tiny_shapes, 'cls'))
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    # The dense checkpoint lacks only the grouping buffers.
    assert 'no self-grouping state for 16 layers' in log  # backbone
    assert 'no self-grouping state for 1 layer (' in log  # FC
    assert 'stage 3/3 (conv 60%, FC 60%)' in log
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    state = torch.load(checkpoint, weights_only=False)['state_dict']
    assert float(state['backbone.layer3.1.conv2.grouped_ratio']) == \
        pytest.approx(0.6)
    assert float(state['head.fc.mask'].mean()) == pytest.approx(0.4,
                                                                abs=0.01)
    return checkpoint


def test_detector_trains_with_frozen_masks_tests_and_deploys(
        sgcnn_backbone, tmp_path, tiny_shapes, run_tool):
    data = data_options(tiny_shapes, 'det')
    work_dir = str(tmp_path / 'train')
    result = run_tool(
        'tools/train.py', DETECTOR, '--work-dir', work_dir, '--cfg-options',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'train_dataloader.batch_size=4', 'randomness.seed=0',
        f'model.backbone.init_cfg.checkpoint={sgcnn_backbone}', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    pretrained = torch.load(sgcnn_backbone, weights_only=False)['state_dict']
    trained = torch.load(checkpoint, weights_only=False)['state_dict']
    masks = [k for k in trained if k.endswith('.mask')]
    assert len(masks) == 16
    for key in masks:  # carried by init_cfg, frozen while fine-tuning
        assert torch.equal(trained[key], pretrained[key]), key

    trained_out = str(tmp_path / 'trained.pkl')
    result = run_tool('tools/test.py', DETECTOR, checkpoint, '--work-dir',
                      str(tmp_path / 'test'), '--out', trained_out,
                      '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]

    deployed = str(tmp_path / 'deploy' / 'sgcnn_retinanet.pth')
    result = run_tool('tools/deploy.py', DETECTOR, checkpoint, deployed)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(deployed, weights_only=False)['state_dict']
    assert 'backbone.layer2.0.conv1.in_index' in state  # ragged
    assert not any(k.endswith('.mask') for k in state)
    deployed_out = str(tmp_path / 'deployed.pkl')
    result = run_tool('tools/test.py', osp.splitext(deployed)[0] + '.py',
                      deployed, '--work-dir', str(tmp_path / 'test_deployed'),
                      '--out', deployed_out, '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_detections(trained_out, deployed_out)
