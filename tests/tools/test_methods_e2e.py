"""Every method end to end through the tools, as the demo runs it on the tiny
shapes set: the method's pretraining from the dense checkpoint (mmpretrain;
the log names what the dense checkpoint lacks), a detector from it (mmdet),
``tools/test.py``, ``tools/deploy.py`` and ``tools/test.py`` on the deployed
model, which must predict what the trained one does. Then what only one
method has: MSGC's budget schedule across a resume, ``get_flops.py`` and
``benchmark_model.py``; FLGC's moving assignments; SG-CNN's grouping stages
and masks frozen in the detector.

Slow (minutes): marked ``slow``; CI runs it.
"""
import glob
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

import pytest
import torch
from helpers import assert_same_detections, data_options

pytestmark = pytest.mark.slow

MSGC_EPOCHS = 4  # the budget anneals over the first two
ITERS_PER_EPOCH = 4  # 16 tiny training images at batch 4


def _no_folded_norms(state):
    assert not any(k.startswith('backbone.') and '.bn' in k for k in state)


def _ragged(marker):

    def check(state):
        assert 'backbone.layer2.0.conv1.in_index' in state
        assert not any(marker in k for k in state)

    return check


@dataclass
class Method:
    pretrain: str
    pretrain_options: Tuple[str, ...]
    #: What the pretraining log says (the dense checkpoint's missing parts).
    pretrain_log: Tuple[str, ...]
    detector: str
    #: Checks on the deployed detector's state dict.
    deployed_state: Callable[[dict], None]
    two_stage: bool = False
    epochs: int = 1
    #: The classifier head also starts from the dense checkpoint.
    head_from_dense: bool = False


METHODS: Dict[str, Method] = {
    'msgc': Method(
        'configs/pretrain/msgc_resnet18_shapes.py',
        ('train_dataloader.batch_size=16', ),
        ('no weights for 16 mask/attention generators', 'loss_budget',
         'macs_ratio'),
        'configs/msgc_faster_rcnn_r18_shapes.py', _no_folded_norms,
        two_stage=True, epochs=MSGC_EPOCHS),
    'dgc': Method(
        'configs/pretrain/dgc_resnet18_shapes.py',
        ('train_dataloader.batch_size=16', ),
        ('no DGC state for 19 DGC convs', 'loss_saliency'),
        'configs/dgc_retinanet_r18_shapes.py', _no_folded_norms),
    'sgcnn': Method(
        'configs/pretrain/sgcnn_resnet18_shapes.py',
        # 64 images at 8 a batch: stages (20, 40, 60%) at iterations 0, 3, 6.
        ('train_dataloader.batch_size=8', 'custom_hooks.0.interval=3'),
        ('no self-grouping state for 16 layers',
         'no self-grouping state for 1 layer (',
         'stage 3/3 (conv 60%, FC 60%)'),
        'configs/sgcnn_retinanet_r18_shapes.py', _ragged('.mask'),
        head_from_dense=True),
    'flgc': Method(
        'configs/pretrain/flgc_resnet18_shapes.py',
        ('train_dataloader.batch_size=8', 'default_hooks.logger.interval=1'),
        ('no group assignment logits for 16 FLGC convs',
         'FLGC assignments moved during training'),
        'configs/flgc_retinanet_r18_shapes.py', _ragged('group_logits')),
}


@dataclass
class Pipelines:
    """Each method's runs, made on first use and shared by this module's
    tests (the pretraining and the detector training take a minute each)."""
    factory: pytest.TempPathFactory
    tiny_shapes: str
    run_tool: Callable
    dense: str
    done: dict = field(default_factory=dict)

    def det_data(self, method):
        return data_options(self.tiny_shapes, 'det',
                            two_stage=METHODS[method].two_stage)

    def pretrained(self, method):
        """(checkpoint, log, work dir) of the method's pretraining."""
        key = ('pretrain', method)
        if key not in self.done:
            m = METHODS[method]
            work_dir = str(self.factory.mktemp(f'{method}_pretrain'))
            parts = ['backbone', 'head'] if m.head_from_dense else [
                'backbone'
            ]
            result = self.run_tool(
                'tools/train.py', m.pretrain, '--work-dir', work_dir,
                '--cfg-options', 'train_cfg.max_epochs=1',
                *m.pretrain_options,
                *(f'model.{part}.init_cfg.checkpoint={self.dense}'
                  for part in parts), *data_options(self.tiny_shapes, 'cls'))
            assert result.returncode == 0, result.stderr[-3000:]
            self.done[key] = (osp.join(work_dir, 'epoch_1.pth'),
                              result.stdout + result.stderr, work_dir)
        return self.done[key]

    def detector_options(self, method, *extra):
        m = METHODS[method]
        return [
            '--cfg-options', f'train_cfg.max_epochs={m.epochs}',
            f'train_cfg.val_interval={m.epochs}',
            'train_dataloader.batch_size=4', 'default_hooks.logger.interval=1',
            'randomness.seed=0',
            f'model.backbone.init_cfg.checkpoint={self.pretrained(method)[0]}',
            *extra, *self.det_data(method)
        ]

    def detector(self, method):
        """(work dir, last checkpoint) of the method's detector training."""
        key = ('detector', method)
        if key not in self.done:
            work_dir = str(self.factory.mktemp(f'{method}_detector'))
            result = self.run_tool('tools/train.py', METHODS[method].detector,
                                   '--work-dir', work_dir,
                                   *self.detector_options(method))
            assert result.returncode == 0, result.stderr[-3000:]
            self.done[key] = (work_dir,
                              osp.join(work_dir,
                                       f'epoch_{METHODS[method].epochs}.pth'))
        return self.done[key]


@pytest.fixture(scope='module')
def pipelines(tmp_path_factory, tiny_shapes, run_tool, pretrained_backbone):
    return Pipelines(tmp_path_factory, tiny_shapes, run_tool,
                     pretrained_backbone)


@pytest.mark.parametrize('method', list(METHODS))
def test_pretraining_from_the_dense_checkpoint(method, pipelines):
    _, log, _ = pipelines.pretrained(method)
    for line in METHODS[method].pretrain_log:
        assert line in log, line


@pytest.mark.parametrize('method', list(METHODS))
def test_deployed_detector_predicts_what_the_trained_one_does(
        method, pipelines, tmp_path):
    detector = METHODS[method].detector
    data = pipelines.det_data(method)
    _, checkpoint = pipelines.detector(method)
    run_tool = pipelines.run_tool

    trained_out = str(tmp_path / 'trained.pkl')
    result = run_tool('tools/test.py', detector, checkpoint, '--work-dir',
                      str(tmp_path / 'test'), '--out', trained_out,
                      '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'coco/bbox_mAP:' in result.stdout + result.stderr

    deployed = str(tmp_path / 'deploy' / f'{method}_detector.pth')
    result = run_tool('tools/deploy.py', detector, checkpoint, deployed)
    assert result.returncode == 0, result.stderr[-3000:]
    METHODS[method].deployed_state(
        torch.load(deployed, weights_only=False)['state_dict'])
    deployed_out = str(tmp_path / 'deployed.pkl')
    result = run_tool('tools/test.py', osp.splitext(deployed)[0] + '.py',
                      deployed, '--work-dir', str(tmp_path / 'test_deployed'),
                      '--out', deployed_out, '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    # The deployed model runs the learned groups through mmlgc's ops with
    # BN folded: the same detections up to float rounding.
    assert_same_detections(trained_out, deployed_out)


# -- MSGC: the budget schedule, get_flops.py, benchmark_model.py -----------
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


def test_msgc_budget_target_anneals_over_first_half(pipelines):
    targets = logged_targets(pipelines.detector('msgc')[0])
    total = MSGC_EPOCHS * ITERS_PER_EPOCH
    assert sorted(targets) == list(range(1, total + 1))
    # tau(t) = 1 - (t / 0.5) * (1 - 0.5) at the start of iteration t.
    for it, target in targets.items():
        progress = (it - 1) / total
        expected = 1 - min(progress / 0.5, 1) * 0.5
        assert target == pytest.approx(expected, abs=1e-6), it


def test_msgc_resume_continues_the_budget_schedule(pipelines, tmp_path):
    """A run resumed from the epoch-2 checkpoint logs the same targets as the
    uninterrupted run, not a schedule restarted at 1."""
    trained, _ = pipelines.detector('msgc')
    work_dir = str(tmp_path / 'resumed')
    result = pipelines.run_tool(
        'tools/train.py', METHODS['msgc'].detector, '--work-dir', work_dir,
        '--resume', osp.join(trained, 'epoch_2.pth'),
        *pipelines.detector_options('msgc'))
    assert result.returncode == 0, result.stderr[-3000:]
    resumed, full = logged_targets(work_dir), logged_targets(trained)
    first = 2 * ITERS_PER_EPOCH + 1
    assert sorted(resumed) == list(range(first,
                                         MSGC_EPOCHS * ITERS_PER_EPOCH + 1))
    assert resumed[first] < 1.0
    for it, target in resumed.items():
        assert target == pytest.approx(full[it], abs=1e-9), it


def test_msgc_flops_and_benchmark(pipelines, tmp_path):
    detector = METHODS['msgc'].detector
    _, checkpoint = pipelines.detector('msgc')
    data = pipelines.det_data('msgc')
    flops = str(tmp_path / 'flops.json')
    result = pipelines.run_tool('tools/analysis/get_flops.py', detector,
                                '--checkpoint', checkpoint, '--num-images',
                                '4', '--out', flops, '--cfg-options', *data)
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
    result = pipelines.run_tool('tools/analysis/benchmark_model.py',
                                '--config', detector, '--checkpoint',
                                checkpoint, '--rounds', '1', '--out', bench,
                                '--cfg-options', *data)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(bench) as f:
        rows = json.load(f)['results']
    assert [r['scope'] for r in rows] == ['backbone', 'detector']
    for row in rows:
        assert set(row['ms']) == {'dense', 'masked', 'deployed'}
        # Its first test image is one of get_flops' four.
        assert backbone['ratio']['min'] - 1e-6 <= row['macs_ratio'] <= \
            backbone['ratio']['max'] + 1e-6


# -- FLGC: the assignments move; SG-CNN: stages, frozen masks ----------------
def test_flgc_assignments_move_in_pretraining(pipelines):
    _, _, work_dir = pipelines.pretrained('flgc')
    (scalars, ) = glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json'))
    with open(scalars) as f:
        moved = [json.loads(line)['flgc_moved'] for line in f
                 if 'flgc_moved' in line]
    assert moved and moved[-1] > 0  # 8 iterations moved some groups


def test_sgcnn_groups_in_stages_and_the_detector_keeps_the_masks(pipelines):
    checkpoint, _, _ = pipelines.pretrained('sgcnn')
    pretrained = torch.load(checkpoint, weights_only=False)['state_dict']
    assert float(pretrained['backbone.layer3.1.conv2.grouped_ratio']) == \
        pytest.approx(0.6)
    assert float(pretrained['head.fc.mask'].mean()) == pytest.approx(
        0.4, abs=0.01)
    _, detector = pipelines.detector('sgcnn')
    trained = torch.load(detector, weights_only=False)['state_dict']
    masks = [k for k in trained if k.endswith('.mask')]
    assert len(masks) == 16
    for key in masks:  # carried by init_cfg, frozen while fine-tuning
        assert torch.equal(trained[key], pretrained[key]), key
