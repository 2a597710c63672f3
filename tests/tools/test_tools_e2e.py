"""End to end through the command-line tools, as a user runs them: pretrain a
backbone (mmpretrain), train a detector from it (mmdet), kill the run after
its first epoch, ``--resume``, then ``tools/test.py`` with CocoMetric.

Slow (a few minutes): marked ``slow``; CI runs it.
"""
import os.path as osp
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import data_options

pytestmark = pytest.mark.slow


def test_pretrain_checkpoint_has_backbone_keys(pretrained_backbone):
    state = torch.load(pretrained_backbone, weights_only=False)['state_dict']
    assert 'backbone.layer4.1.conv2.weight' in state
    assert state['head.fc.weight'].shape == (4, 512)


def test_classifier_tests_with_accuracy(pretrained_backbone, tiny_shapes,
                                        run_tool, tmp_path):
    """The same tools/test.py evaluates an mmpretrain config."""
    out = str(tmp_path / 'preds.pkl')
    result = run_tool('tools/test.py',
                      'configs/pretrain/resnet18_shapes.py',
                      pretrained_backbone, '--work-dir', str(tmp_path),
                      '--out', out, '--cfg-options',
                      *data_options(tiny_shapes, 'cls'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'accuracy/top1:' in result.stdout + result.stderr
    with open(out, 'rb') as f:
        assert len(pickle.load(f)) == 32


@pytest.mark.parametrize('config', ['retinanet_r18_shapes'])
def test_train_interrupt_resume_and_test(config, tmp_path, tiny_shapes,
                                         repo_root, run_tool,
                                         pretrained_backbone):
    work_dir = str(tmp_path / config)
    options = [
        '--cfg-options', 'train_cfg.max_epochs=3', 'train_cfg.val_interval=3',
        'train_dataloader.batch_size=4',
        f'model.backbone.init_cfg.checkpoint={pretrained_backbone}',
        *data_options(tiny_shapes, 'det')
    ]
    train = [sys.executable, 'tools/train.py', f'configs/{config}.py',
             '--work-dir', work_dir]

    # Interrupt: kill the run as soon as its first checkpoint is complete
    # (mmengine writes `last_checkpoint` after the checkpoint file).
    proc = subprocess.Popen(train + options, cwd=repo_root,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    marker = osp.join(work_dir, 'last_checkpoint')
    deadline = time.time() + 600
    while not osp.isfile(marker) and proc.poll() is None:
        assert time.time() < deadline, 'no checkpoint within 10 minutes'
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        'training finished before it could be interrupted: '
        + proc.stderr.read()[-2000:])
    assert not osp.isfile(osp.join(work_dir, 'epoch_3.pth'))

    # Resume from the work dir's latest checkpoint and finish.
    result = run_tool(*train[1:], '--resume', *options)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'resumed epoch: 1' in log
    final = osp.join(work_dir, 'epoch_3.pth')
    meta = torch.load(final, weights_only=False)['meta']
    assert meta['epoch'] == 3 and meta['iter'] == 3 * 4  # 16 images, batch 4
    assert 'coco/bbox_mAP' in log  # validation at the last epoch

    # Test with COCO mAP, dump predictions.
    out = str(tmp_path / 'preds.pkl')
    result = run_tool('tools/test.py', f'configs/{config}.py',
                      final, '--work-dir', str(tmp_path / 'test'), '--out',
                      out, '--cfg-options', *data_options(tiny_shapes, 'det'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'coco/bbox_mAP:' in result.stdout + result.stderr
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 8 and 'pred_instances' in preds[0]
