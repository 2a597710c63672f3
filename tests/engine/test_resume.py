"""Exact resume: a run killed (SIGKILL) in the middle of an epoch and
resumed with ``--resume`` ends where the uninterrupted run ends — the same
weights, masks and schedule buffers, optimizer state, lr schedule and
per-iteration losses — for MSGC (gate noise, MAC budget τ), DGC (pruning
``k``) and SG-CNN (progressive grouping stages) on the shapes classifiers.

The end-to-end runs are slow (a minute or so in all): marked ``slow``.
"""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import data_options

IMAGES, BATCH = 16, 4  # the first 16 tiny classification images
ITERS_PER_EPOCH = IMAGES // BATCH
EPOCHS = 2
CHECKPOINT_INTERVAL = 3  # iterations 3 (the middle of epoch 1), 6 and 8
KILL_AFTER = 3

# method: (config, extra --cfg-options)
METHODS = {
    'msgc': ('configs/pretrain/msgc_resnet18_shapes.py', []),
    'dgc': ('configs/pretrain/dgc_resnet18_shapes.py', []),
    # Stages at iterations 0, 2 and 4: two are in the checkpoint, the
    # third is applied after the resume.
    'sgcnn': ('configs/pretrain/sgcnn_resnet18_shapes.py',
              ['custom_hooks.0.interval=2', 'model.head.init_cfg=None']),
}


def train_command(config, work_dir, tiny_shapes, extra=()):
    return [
        sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
        '--cfg-options', f'train_cfg.max_epochs={EPOCHS}',
        f'train_cfg.val_interval={EPOCHS}',
        f'train_dataloader.batch_size={BATCH}',
        f'train_dataloader.dataset.indices={IMAGES}',
        'val_dataloader.dataset.indices=8',
        'randomness.seed=0', 'model.backbone.init_cfg=None',
        # A quarter of ResNet-18's widths: 16x fewer MACs and checkpoint
        # bytes (the optimizer state included).
        'model.backbone.base_channels=16', 'model.head.in_channels=128',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.by_epoch=False',
        f'default_hooks.checkpoint.interval={CHECKPOINT_INTERVAL}', *extra,
        *data_options(tiny_shapes, 'cls')
    ]


def run_to_end(command, repo_root):
    result = subprocess.run(command, cwd=repo_root, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def kill_after_checkpoint(command, work_dir, repo_root, iteration):
    """Start training, SIGKILL it as soon as the checkpoint of
    ``iteration`` is complete (``last_checkpoint`` names it)."""
    proc = subprocess.Popen(command, cwd=repo_root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    marker = osp.join(work_dir, 'last_checkpoint')
    deadline = time.time() + 600
    while proc.poll() is None:
        assert time.time() < deadline, 'no checkpoint within 10 minutes'
        if osp.isfile(marker):
            with open(marker) as f:
                if f.read().strip().endswith(f'iter_{iteration}.pth'):
                    break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        'training finished before it could be killed: ' +
        proc.stderr.read()[-2000:])
    with open(marker) as f:
        resumed_from = f.read().strip()
    done = int(osp.basename(resumed_from)[len('iter_'):-len('.pth')])
    assert done % ITERS_PER_EPOCH, f'{resumed_from} is not mid-epoch'
    return done


def logged_scalars(work_dir):
    """``{iteration: {name: value}}`` of a run's (every run's, if resumed in
    the same work dir) training scalars."""
    scalars = {}
    for root, _, files in os.walk(work_dir):
        if 'scalars.json' in files:
            with open(osp.join(root, 'scalars.json')) as f:
                for line in f:
                    record = json.loads(line)
                    if 'loss' in record:  # training records
                        scalars.setdefault(record['iter'], {}).update(
                            {k: v for k, v in record.items()
                             if k not in ('time', 'data_time', 'eta',
                                          'memory')})
    return scalars


def assert_same(a, b, where=''):
    """Recursive exact equality of checkpoint contents."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), (
            f'{where}: max |diff| '
            f'{(a.double() - b.double()).abs().max().item():.3g}')
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f'{where}[{i}]')
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.parametrize('method', list(METHODS))
def test_killed_mid_epoch_then_resumed_equals_uninterrupted(
        method, tmp_path, tiny_shapes, repo_root):
    config, extra = METHODS[method]
    full_dir, resumed_dir = str(tmp_path / 'full'), str(tmp_path / 'resumed')
    run_to_end(train_command(config, full_dir, tiny_shapes, extra),
               repo_root)

    command = train_command(config, resumed_dir, tiny_shapes, extra)
    done = kill_after_checkpoint(command, resumed_dir, repo_root, KILL_AFTER)
    log = run_to_end(command[:3] + ['--resume'] + command[3:], repo_root)
    assert f'resumed epoch: 0, iter: {done}' in log

    last = f'iter_{EPOCHS * ITERS_PER_EPOCH}.pth'
    full = torch.load(osp.join(full_dir, last), weights_only=False)
    resumed = torch.load(osp.join(resumed_dir, last), weights_only=False)
    # Weights, BN statistics and every method buffer: MSGC has none, DGC
    # its pruning k (`pruned_channels`), SG-CNN its masks and stage
    # (`grouped_ratio`).
    assert_same(full['state_dict'], resumed['state_dict'], 'state_dict')
    assert_same(full['optimizer'], resumed['optimizer'], 'optimizer')
    assert_same(full['param_schedulers'], resumed['param_schedulers'],
                'param_schedulers')
    for key in ('epoch', 'iter', 'random_states'):
        assert_same(full['meta'][key], resumed['meta'][key], key)

    # Every iteration after the resume logged the same losses, lr and, for
    # MSGC, the same budget target τ and MAC ratio.
    full_log, resumed_log = logged_scalars(full_dir), logged_scalars(
        resumed_dir)
    assert set(resumed_log) == set(full_log) == set(
        range(1, EPOCHS * ITERS_PER_EPOCH + 1))
    for it in range(done + 1, EPOCHS * ITERS_PER_EPOCH + 1):
        assert resumed_log[it] == full_log[it], it
    if method == 'msgc':
        assert full_log[EPOCHS * ITERS_PER_EPOCH]['macs_target'] == 0.5
    if method == 'dgc':
        assert any(v.item() > 0 for k, v in full['state_dict'].items()
                   if k.endswith('pruned_channels'))
    if method == 'sgcnn':
        ratios = {v.item() for k, v in full['state_dict'].items()
                  if k.endswith('grouped_ratio')}
        assert ratios and all(r == pytest.approx(0.6) for r in ratios)


CLASSIFIERS = {m: f'configs/pretrain/{m}_resnet18_shapes.py'
               for m in ('msgc', 'dgc', 'sgcnn', 'flgc')}
DETECTORS = {m: f'configs/{m}_faster_rcnn_r18_shapes.py' for m in CLASSIFIERS}


@torch.no_grad()
def _as_if_trained(method, classifier):
    """Method state away from its initial value (grouped masks, k,
    thresholds), BN statistics from data."""
    from mmlgc.layers import DGCConv
    from mmlgc.layers.self_grouping import group_model
    if method == 'sgcnn':
        group_model(classifier, conv_ratio=0.4)
    for layer in classifier.modules():
        if isinstance(layer, DGCConv):
            layer.set_progress(1.0)
            layer.threshold.fill_(0.25)

    # BN statistics of the data they see (the network is random: with the
    # initial ones, activations grow with depth).
    def set_stats(norm, args):
        dims = [d for d in range(args[0].dim()) if d != 1]
        norm.running_mean.copy_(args[0].mean(dims))
        norm.running_var.copy_(args[0].var(dims, unbiased=False))

    handles = [
        m.register_forward_pre_hook(set_stats)
        for m in classifier.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    classifier.eval().extract_feat(torch.rand(4, 3, 64, 64) * 255)
    for handle in handles:
        handle.remove()


@pytest.mark.parametrize('method', list(CLASSIFIERS))
def test_classifier_checkpoint_into_detector_and_through_deploy(
        method, tmp_path, repo_root):
    """The method's shapes classifier, saved as the runner saves it, loads
    into the method's detector through ``init_cfg=Pretrained`` with every
    backbone tensor (masks, k, thresholds, assignments) unchanged; the
    detector, deployed and reloaded into the deploy config from disk,
    computes the same features."""
    from mmengine.runner import load_checkpoint, save_checkpoint

    from mmlgc.deploy import deploy_model, mark_deploy_in_config
    from mmlgc.utils.config import build_model, load_config

    torch.manual_seed(0)
    cls_cfg = load_config(osp.join(repo_root, CLASSIFIERS[method]))
    cls_cfg.model.backbone.update(base_channels=16, init_cfg=None)
    cls_cfg.model.head.update(in_channels=128, init_cfg=None)
    classifier = build_model(cls_cfg)
    classifier.init_weights()
    _as_if_trained(method, classifier)
    ckpt = str(tmp_path / 'classifier.pth')
    save_checkpoint(
        dict(meta=dict(epoch=2), state_dict=classifier.state_dict()), ckpt)

    det_cfg = load_config(osp.join(repo_root, DETECTORS[method]))
    det_cfg.model.backbone.update(
        base_channels=16,
        init_cfg=dict(type='Pretrained', checkpoint=ckpt, prefix='backbone.'))
    det_cfg.model.neck.in_channels = [16, 32, 64, 128]
    detector = build_model(det_cfg)
    detector.init_weights()
    trained = {k[len('backbone.'):]: v
               for k, v in classifier.state_dict().items()
               if k.startswith('backbone.')}
    loaded = detector.backbone.state_dict()
    assert loaded.keys() == trained.keys()
    for key, value in trained.items():
        assert torch.equal(loaded[key], value), key

    # In float64, so that a near-zero gate logit cannot flip a mask between
    # the BN-folded and the unfolded forms.
    detector.double().eval()
    image = torch.rand(1, 3, 64, 64, dtype=torch.float64) * 255
    with torch.no_grad():
        expected = detector.extract_feat(image)
        names = deploy_model(detector)
    assert names
    deployed_ckpt = str(tmp_path / 'deployed.pth')
    save_checkpoint(dict(state_dict=detector.state_dict()), deployed_ckpt)
    deployed = build_model(mark_deploy_in_config(det_cfg, names)).double()
    load_checkpoint(deployed, deployed_ckpt, map_location='cpu', strict=True)
    with torch.no_grad():
        features = deployed.eval().extract_feat(image)
    for a, b in zip(expected, features):
        assert ((b - a).abs().max() / a.abs().max()).item() <= 1e-6


class _FakeRunner:
    """What RandomStateHook reads from mmengine's Runner."""

    def __init__(self, iter, sampler_seed):
        sampler = type('Sampler', (), {'seed': sampler_seed})()
        loader = type('Loader', (), {'sampler': sampler})()
        self.iter = iter
        self.train_loop = type('Loop', (), {'dataloader': loader})()


def test_random_state_hook_restores_on_resume_only():
    from mmlgc.engine import RandomStateHook
    hook, saved = RandomStateHook(), dict(meta=dict(iter=5))
    torch.manual_seed(1)
    hook.before_save_checkpoint(_FakeRunner(5, sampler_seed=7), saved)
    expected = torch.rand(3)

    # `load_from`: a new run (iteration 0) keeps its own seed.
    torch.manual_seed(2)
    hook.after_load_checkpoint(_FakeRunner(0, 9), saved)
    hook.before_train(_FakeRunner(0, 9))
    assert not torch.equal(torch.rand(3), expected)

    # `--resume`: the run continues at the checkpoint's iteration.
    torch.manual_seed(2)
    resumed = _FakeRunner(5, sampler_seed=9)
    hook.after_load_checkpoint(resumed, saved)
    hook.before_train(resumed)
    assert torch.equal(torch.rand(3), expected)
    assert resumed.train_loop.dataloader.sampler.seed == 7


def test_validation_inside_training_does_not_move_the_generators():
    """So an epoch checkpoint, taken before the validation that follows
    it, continues as the run that validated."""
    from mmlgc.engine import RandomStateHook
    hook = RandomStateHook()
    torch.manual_seed(3)
    np.random.seed(3)
    expected = (torch.rand(2), np.random.rand(2))
    torch.manual_seed(3)
    np.random.seed(3)
    hook.before_val(None)
    torch.rand(5), np.random.rand(5)  # what validation draws
    hook.after_val(None)
    assert torch.equal(torch.rand(2), expected[0])
    assert np.array_equal(np.random.rand(2), expected[1])
