"""Bad checkpoints are clear errors on every mmengine load path
once enabled (mmlgc.utils.checkpoint_checks: a config's CheckpointChecksHook
or mmlgc's tools); dense checkpoints still load
into method backbones. Tiny models (``base_channels=8``): no training."""
import os.path as osp

import pytest
import torch
from mmdet.models.backbones import MobileNetV2, ResNet
from mmengine.model import BaseModule
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from torch import nn

from mmlgc.models.backbones import (DGCResNet, FLGCMobileNetV2, FLGCResNet,
                                    MSGCMobileNetV2, MSGCResNet, SGCNNResNet)
from mmlgc.utils.checkpoint_checks import (CheckpointError,
                                           CheckpointMismatchError,
                                           check_config_checkpoints,
                                           checkpoint_checks_enabled,
                                           disable_checkpoint_checks,
                                           enable_checkpoint_checks)

TINY = dict(base_channels=8, stem_channels=8)


def _keep_mmengine_loaders(monkeypatch):
    """mmengine's loaders are put back after the test."""
    loader = mmengine_checkpoint.CheckpointLoader
    monkeypatch.setattr(loader, 'load_checkpoint',
                        loader.__dict__['load_checkpoint'])
    for name in ('load_state_dict', '_load_checkpoint_with_prefix'):
        monkeypatch.setattr(mmengine_checkpoint, name,
                            getattr(mmengine_checkpoint, name))


@pytest.fixture(autouse=True)
def checks(monkeypatch):
    """The checks are opt-in: enabled for each test here, then removed."""
    _keep_mmengine_loaders(monkeypatch)
    enable_checkpoint_checks()


def _save(path, state_dict, prefix=''):
    save_checkpoint(
        dict(state_dict={prefix + k: v
                         for k, v in state_dict.items()}), str(path))
    return str(path)


@pytest.fixture
def r18(tmp_path):
    """A (tiny) detector checkpoint: a ResNet-18 under ``backbone.``."""
    return _save(tmp_path / 'r18.pth', ResNet(18, **TINY).state_dict(),
                 'backbone.')


def _pretrained(cls, checkpoint, prefix='backbone.', **kwargs):
    model = cls(init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                              prefix=prefix), **kwargs)
    model.init_weights()
    return model


# -- files ---------------------------------------------------------------
def _damaged(tmp_path, r18, kind):
    path = tmp_path / f'{kind}.pth'
    raw = open(r18, 'rb').read()
    if kind == 'missing':
        return str(path)
    if kind == 'empty':
        raw = b''
    elif kind == 'truncated':
        raw = raw[:len(raw) // 2]
    elif kind == 'corrupt':  # a damaged tensor payload: torch loads it
        middle = len(raw) // 2
        raw = raw[:middle] + bytes(64) + raw[middle + 64:]
    elif kind == 'not_a_checkpoint':
        raw = b'this is a text file\n'
    path.write_bytes(raw)
    return str(path)


@pytest.mark.parametrize('kind, error, message', [
    ('missing', FileNotFoundError, 'checkpoint not found: {path}'),
    ('empty', CheckpointError, 'checkpoint {path} is empty (0 bytes)'),
    ('truncated', CheckpointError, 'checkpoint {path} ({size} bytes) is '
     'truncated or corrupt'),
    ('corrupt', CheckpointError, 'fails its CRC check'),
    ('not_a_checkpoint', CheckpointError,
     'cannot read checkpoint {path} (20 bytes): it is not a PyTorch '
     'checkpoint'),
])
@pytest.mark.parametrize('path_kind', ['load_checkpoint', 'Pretrained'])
def test_unreadable_file_names_the_file(tmp_path, r18, kind, error, message,
                                        path_kind):
    path = _damaged(tmp_path, r18, kind)
    size = f'{osp.getsize(path):,}' if osp.exists(path) else ''
    with pytest.raises(error) as info:
        if path_kind == 'load_checkpoint':  # load_from, --resume, tools
            load_checkpoint(ResNet(18, **TINY), path)
        else:
            _pretrained(ResNet, path, depth=18, **TINY)
    assert message.format(path=path, size=size) in str(info.value)


def test_checkpoint_holding_no_dict(tmp_path):
    path = str(tmp_path / 'tensor.pth')
    torch.save(torch.ones(2), path)
    with pytest.raises(CheckpointError, match='holds a Tensor, not a state '
                       'dict'):
        _pretrained(ResNet, path, depth=18, **TINY)


def test_missing_prefix_lists_the_prefixes_there(tmp_path):
    path = _save(tmp_path / 'bare.pth', ResNet(18, **TINY).state_dict())
    with pytest.raises(CheckpointMismatchError) as info:
        _pretrained(ResNet, path, depth=18, **TINY)
    message = str(info.value)
    assert "no key with prefix 'backbone.'" in message
    assert 'start with bn1., conv1., layer1.' in message
    assert 'prefix=None' in message


# -- another architecture ----------------------------------------------------
def _assert_summary(message, path, *lines):
    assert f'checkpoint {path} does not fit' in message
    for line in lines:
        assert line in message, message


@pytest.mark.parametrize('cls', [ResNet, MSGCResNet, DGCResNet, FLGCResNet,
                                 SGCNNResNet])
def test_mobilenet_checkpoint_into_resnet(tmp_path, cls):
    """Before: a warning, then training from random weights."""
    path = _save(tmp_path / 'mbv2.pth',
                 MobileNetV2(widen_factor=0.25).state_dict(), 'backbone.')
    with pytest.raises(CheckpointMismatchError) as info:
        _pretrained(cls, path, depth=18, **TINY)
    _assert_summary(str(info.value), path, f'does not fit {cls.__name__}: 0 '
                    'of its', 'missing: conv1.weight, bn1.weight',
                    'unexpected: layer5.0.expand_conv.conv.weight',
                    'another architecture')


@pytest.mark.parametrize('cls', [ResNet, MSGCResNet, DGCResNet, FLGCResNet,
                                 SGCNNResNet])
def test_resnet50_checkpoint_into_resnet18(tmp_path, cls):
    path = _save(tmp_path / 'r50.pth', ResNet(50, **TINY).state_dict(),
                 'backbone.')
    with pytest.raises(CheckpointMismatchError) as info:
        _pretrained(cls, path, depth=18, **TINY)
    _assert_summary(
        str(info.value), path, 'with another shape',
        'shapes (checkpoint vs model):',
        'layer1.0.conv1.weight: [8, 8, 1, 1] vs [8, 8, 3, 3]')


@pytest.mark.parametrize('cls', [ResNet, MSGCResNet])
def test_resnet18_checkpoint_into_resnet34(tmp_path, r18, cls):
    """No shape differs, but half the blocks would stay random (the method
    state a dense checkpoint lacks counts neither way)."""
    with pytest.raises(CheckpointMismatchError) as info:
        _pretrained(cls, r18, depth=34, **TINY)
    _assert_summary(str(info.value), r18, 'missing: layer1.2.conv1.weight')


class _Detector(BaseModule):
    """A backbone and a head, as a detector or classifier has."""

    def __init__(self, classes=3, depth=18):
        super().__init__()
        self.backbone = ResNet(depth, **TINY)
        self.head = nn.Linear(64, classes)


def test_other_head_is_a_warning_when_fine_tuning(tmp_path):
    """``load_from`` a detector trained on other classes: the head's shapes
    differ, the backbone loads; mmengine's warning, as before."""
    source = _Detector(classes=5)
    path = _save(tmp_path / 'det.pth', source.state_dict())
    model = _Detector(classes=3)
    load_checkpoint(model, path)
    assert torch.equal(model.backbone.conv1.weight,
                       source.backbone.conv1.weight)


def test_other_backbone_in_a_detector(tmp_path):
    path = _save(tmp_path / 'det50.pth', _Detector(depth=50).state_dict())
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(_Detector(depth=18), path)
    _assert_summary(str(info.value), path, 'does not fit _Detector '
                    '(backbone)', 'backbone.layer1.0.conv1.weight: '
                    '[8, 8, 1, 1] vs [8, 8, 3, 3]')


def test_strict_load_needs_the_whole_model(tmp_path):
    """tools/test.py and tools/deploy.py load strictly: a detector checkpoint
    where a classifier is expected (its head missing) is an error."""
    detector = _Detector()
    path = _save(tmp_path / 'det.pth', {
        **{k: v for k, v in detector.state_dict().items()
           if k.startswith('backbone.')},
        'rpn_head.rpn_conv.weight': torch.zeros(1)})

    class Classifier(_Detector):
        pass

    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(Classifier(), path, strict=True)
    _assert_summary(str(info.value), path, 'does not fit Classifier',
                    'missing: head.weight, head.bias',
                    'unexpected: rpn_head.rpn_conv.weight',
                    'strict load')


def test_runner_paths_are_checked(tmp_path, r18):
    """Runner.load_checkpoint (load_from, --resume, tools/test.py) reads
    with ``_load_checkpoint`` and loads with ``_load_checkpoint_to_model``:
    both are checked."""
    path = _save(tmp_path / 'r50.pth', _Detector(depth=50).state_dict())
    checkpoint = mmengine_checkpoint._load_checkpoint(path)
    with pytest.raises(CheckpointMismatchError):
        mmengine_checkpoint._load_checkpoint_to_model(_Detector(), checkpoint)
    with pytest.raises(FileNotFoundError):
        mmengine_checkpoint._load_checkpoint(str(tmp_path / 'nope.pth'))


# -- what must keep loading ---------------------------------------------------
@pytest.mark.parametrize('cls, kwargs', [
    (ResNet, {}),
    (MSGCResNet, dict(heads=4)),
    (DGCResNet, {}),
    (FLGCResNet, dict(num_groups=2)),
    (SGCNNResNet, {}),
])
def test_dense_resnet_checkpoint_loads_into_method_backbones(r18, cls, kwargs):
    model = _pretrained(cls, r18, depth=18, **TINY, **kwargs)
    dense = torch.load(r18, weights_only=False)['state_dict']
    assert torch.equal(model.layer4[1].conv2.weight,
                       dense['backbone.layer4.1.conv2.weight'])


@pytest.mark.parametrize('cls', [MSGCMobileNetV2, FLGCMobileNetV2])
def test_dense_mobilenet_checkpoint_loads(tmp_path, cls):
    path = _save(tmp_path / 'mbv2.pth',
                 MobileNetV2(widen_factor=0.5).state_dict(), 'backbone.')
    _pretrained(cls, path, widen_factor=0.5, heads=2) if cls is \
        MSGCMobileNetV2 else _pretrained(cls, path, widen_factor=0.5)


def test_dense_checkpoint_loads_into_depthwise_flgc(tmp_path):
    """FLGC's depthwise ResNet-50 has no dense 3x3 conv2 to take: kept at
    its initialisation (one log line), the rest loads."""
    dense = ResNet(50, **TINY).state_dict()
    path = _save(tmp_path / 'r50.pth', dense, 'backbone.')
    model = _pretrained(FLGCResNet, path, depth=50, depthwise=True,
                        num_groups=2, **TINY)
    assert torch.equal(model.layer1[0].conv1.weight,
                       dense['layer1.0.conv1.weight'])


# -- before the run -----------------------------------------------------------
def test_config_checkpoints_checked_before_the_run(tmp_path, r18):
    from mmengine.config import Config
    cfg = Config(dict(model=dict(backbone=dict(init_cfg=dict(
        type='Pretrained', checkpoint=r18)), neck=dict(init_cfg=dict(
            type='Pretrained', checkpoint='torchvision://x'))),
        load_from=None))
    check_config_checkpoints(cfg)  # a URL is not checked here
    cfg.load_from = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='^load_from: checkpoint not '
                       'found'):
        check_config_checkpoints(cfg)
    cfg.load_from = None
    cfg.model.backbone.init_cfg.checkpoint = _damaged(tmp_path, r18, 'empty')
    with pytest.raises(CheckpointError, match=r'^model\.backbone\.init_cfg: '
                       'checkpoint .* is empty'):
        check_config_checkpoints(cfg)
    # Testing never initialises weights: only load_from must exist (the
    # shapes configs name pretraining outputs a test machine may not have).
    check_config_checkpoints(cfg, init_cfgs=False)


def test_train_tool_stops_before_the_work_dir(run_tool, tmp_path):
    work_dir = tmp_path / 'work'
    result = run_tool('tools/train.py', 'configs/retinanet_r18_shapes.py',
                      '--work-dir', str(work_dir), '--resume',
                      str(tmp_path / 'nope.pth'), '--cfg-options',
                      'model.backbone.init_cfg=None')
    assert result.returncode != 0
    assert f'error: load_from: checkpoint not found: {tmp_path}/nope.pth' \
        in result.stderr
    assert not work_dir.exists()


def test_enable_is_idempotent():
    first = mmengine_checkpoint.CheckpointLoader.load_checkpoint
    enable_checkpoint_checks()
    assert mmengine_checkpoint.CheckpointLoader.load_checkpoint == first


def test_the_hook_enables_the_checks_before_the_run_loads(
        monkeypatch, tmp_path, r18):
    """Off, a checkpoint of another depth is mmengine's warning; a config's
    ``CheckpointChecksHook`` makes it the error (the Runner calls
    ``before_run`` before it initialises or loads weights)."""
    from mmlgc.engine import CheckpointChecksHook
    monkeypatch.undo()
    # mmengine's own loaders, whatever enabled the checks earlier in this
    # process (a Runner of an mmlgc config does); put back after the test
    _keep_mmengine_loaders(monkeypatch)
    disable_checkpoint_checks()
    assert not checkpoint_checks_enabled()
    r50 = _save(tmp_path / 'r50.pth', ResNet(50, **TINY).state_dict(),
                'backbone.')
    _pretrained(ResNet, r50, depth=18, **TINY)  # mmengine: a warning only
    CheckpointChecksHook().before_run(runner=None)
    assert checkpoint_checks_enabled()
    with pytest.raises(CheckpointMismatchError):
        _pretrained(ResNet, r50, depth=18, **TINY)
