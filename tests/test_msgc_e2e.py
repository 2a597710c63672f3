"""MSGC end to end through the tools, as the demo runs it on the tiny shapes
set: MSGC pretraining from a dense checkpoint (mmpretrain), MSGC Faster R-CNN
(mmdet) with the annealed MAC budget, a resumed run that continues the
budget schedule, ``tools/test.py``, ``tools/deploy.py`` (the deployed model
predicts what the trained one does), ``get_flops.py`` and
``benchmark_model.py``.

Slow (minutes): marked ``slow``; CI runs it.
"""
import glob
import json
import os.path as osp

import pytest
import torch
from helpers import assert_same_detections, data_options

pytestmark = pytest.mark.slow

DETECTOR = 'configs/msgc_faster_rcnn_r18_shapes.py'
EPOCHS = 4
ITERS_PER_EPOCH = 4  # 16 tiny training images at batch 4


@pytest.fixture(scope='module')
def msgc_backbone(tmp_path_factory, tiny_shapes, run_tool,
                  pretrained_backbone):
    work_dir = str(tmp_path_factory.mktemp('msgc_pretrain'))
    result = run_tool(
        'tools/train.py', 'configs/pretrain/msgc_resnet18_shapes.py',
        '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_epochs=1',
        'train_dataloader.batch_size=16',
        f'model.backbone.init_cfg.checkpoint={pretrained_backbone}',
        *data_options(tiny_shapes, 'cls'))
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    # The dense checkpoint lacks only the generators, reported in one line.
    assert 'no weights for 16 mask/attention generators' in log
    assert 'loss_budget' in log and 'macs_ratio' in log
    return osp.join(work_dir, 'epoch_1.pth')


def detector_options(tiny_shapes, backbone, *extra):
    return [
        '--cfg-options', f'train_cfg.max_epochs={EPOCHS}',
        f'train_cfg.val_interval={EPOCHS}', 'train_dataloader.batch_size=4',
        'default_hooks.logger.interval=1', 'randomness.seed=0',
        f'model.backbone.init_cfg.checkpoint={backbone}', *extra,
        *data_options(tiny_shapes, 'det', two_stage=True)
    ]


def logged_targets(work_dir):
    """``{iteration: macs_target}`` from a run's scalar log."""
    targets = {}
    for path in sorted(
            glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'macs_target' in record:
                    targets[record['iter']] = record['macs_target']
    return targets


@pytest.fixture(scope='module')
def trained_detector(tmp_path_factory, tiny_shapes, run_tool, msgc_backbone):
    work_dir = str(tmp_path_factory.mktemp('msgc_detector'))
    result = run_tool('tools/train.py', DETECTOR, '--work-dir', work_dir,
                      *detector_options(tiny_shapes, msgc_backbone))
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


def test_budget_target_anneals_over_first_half(trained_detector):
    targets = logged_targets(trained_detector)
    total = EPOCHS * ITERS_PER_EPOCH
    assert sorted(targets) == list(range(1, total + 1))
    # tau(t) = 1 - (t / 0.5) * (1 - 0.5) at the start of iteration t.
    for it, target in targets.items():
        progress = (it - 1) / total
        expected = 1 - min(progress / 0.5, 1) * 0.5
        assert target == pytest.approx(expected, abs=1e-6), it


def test_resume_continues_the_budget_schedule(trained_detector, tmp_path,
                                              tiny_shapes, run_tool,
                                              msgc_backbone):
    """A run resumed from the epoch-2 checkpoint logs the same targets as the
    uninterrupted run, not a schedule restarted at 1."""
    resume_from = osp.join(trained_detector, 'epoch_2.pth')
    work_dir = str(tmp_path / 'resumed')
    result = run_tool('tools/train.py', DETECTOR, '--work-dir', work_dir,
                      '--resume', resume_from,
                      *detector_options(tiny_shapes, msgc_backbone))
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = logged_targets(work_dir)
    full = logged_targets(trained_detector)
    first = 2 * ITERS_PER_EPOCH + 1
    assert sorted(resumed) == list(range(first, EPOCHS * ITERS_PER_EPOCH + 1))
    assert resumed[first] < 1.0
    for it, target in resumed.items():
        assert target == pytest.approx(full[it], abs=1e-9), it


def test_test_deploy_flops_and_benchmark(trained_detector, tmp_path,
                                         tiny_shapes, run_tool):
    checkpoint = osp.join(trained_detector, f'epoch_{EPOCHS}.pth')
    data = data_options(tiny_shapes, 'det', two_stage=True)

    trained_out = str(tmp_path / 'trained.pkl')
    result = run_tool('tools/test.py', DETECTOR, checkpoint, '--work-dir',
                      str(tmp_path / 'test'), '--out', trained_out,
                      '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'coco/bbox_mAP:' in result.stdout + result.stderr

    deployed = str(tmp_path / 'deploy' / 'msgc_frcnn.pth')
    result = run_tool('tools/deploy.py', DETECTOR, checkpoint, deployed)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(deployed, weights_only=False)['state_dict']
    assert not any(k.startswith('backbone.') and '.bn' in k for k in state)
    deployed_out = str(tmp_path / 'deployed.pkl')
    result = run_tool('tools/test.py', osp.splitext(deployed)[0] + '.py',
                      deployed, '--work-dir', str(tmp_path / 'test_deployed'),
                      '--out', deployed_out, '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    # The deployed model runs the learned groups through mmlgc's ops with
    # BN folded: the same detections up to float rounding.
    assert_same_detections(trained_out, deployed_out)

    flops = str(tmp_path / 'flops.json')
    result = run_tool('tools/analysis/get_flops.py', DETECTOR,
                      '--checkpoint', checkpoint, '--num-images', '4',
                      '--out', flops, '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(flops) as f:
        report = json.load(f)
    assert report['images'] == 4
    backbone = report['backbone_mmlgc']
    assert 0 < backbone['dynamic']['min'] <= backbone['dynamic']['max']
    # 16 training iterations leave most gates open: the generators make the
    # dynamic count exceed the dense one by < 1 %, no more.
    assert backbone['dynamic']['max'] < 1.01 * backbone['dense']
    assert backbone['ratio']['mean'] == pytest.approx(
        backbone['dynamic']['mean'] / backbone['dense'])
    layers = report['layers']
    assert {'stem', 'layer1.0', 'layer4.1'} <= set(layers)
    assert sum(v['dynamic']['mean'] for v in layers.values()) == \
        pytest.approx(backbone['dynamic']['mean'])
    assert sum(v['dense'] for v in layers.values()) == \
        pytest.approx(backbone['dense'])
    assert report['analyzer']['backbone_flops'] > 0

    bench = str(tmp_path / 'bench.json')
    result = run_tool('tools/analysis/benchmark_model.py', '--config',
                      DETECTOR, '--checkpoint', checkpoint, '--rounds', '1',
                      '--out', bench, '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(bench) as f:
        rows = json.load(f)['results']
    assert [r['scope'] for r in rows] == ['backbone', 'detector']
    for row in rows:
        assert set(row['ms']) == {'dense', 'masked', 'deployed'}
        # Its first test image is one of get_flops' four.
        assert backbone['ratio']['min'] - 1e-6 <= row['macs_ratio'] <= \
            backbone['ratio']['max'] + 1e-6
