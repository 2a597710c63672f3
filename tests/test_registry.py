"""``type='mmlgc.X'`` resolves from mmdet- and mmpretrain-scoped configs, and
``custom_imports=dict(imports=['mmlgc'])`` brings mmlgc into a user's config."""
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.registry import DefaultScope
from torch import nn

from mmlgc.registry import MODELS


@MODELS.register_module(force=True)
class ThrowawayNeck(nn.Module):
    """Registered only by this test: proves the registry path end to end."""

    def __init__(self, in_channels, out_channels, num_outs):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.num_outs = num_outs

    def forward(self, inputs):
        outs = [conv(x) for conv, x in zip(self.convs, inputs)]
        while len(outs) < self.num_outs:
            outs.append(nn.functional.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)


def test_mmlgc_registries_are_children_of_mmengine_roots():
    from mmengine.registry import MODELS as ROOT
    assert MODELS.scope == 'mmlgc'
    assert MODELS.parent is ROOT
    assert ROOT._children['mmlgc'] is MODELS


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_scoped_type_resolves_from_each_library(scope):
    registry = {
        'mmdet': 'mmdet.registry',
        'mmpretrain': 'mmpretrain.registry'
    }[scope]
    scoped_models = __import__(registry, fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        neck = scoped_models.build(
            dict(type='mmlgc.ThrowawayNeck', in_channels=[4], out_channels=2,
                 num_outs=2))
    assert isinstance(neck, ThrowawayNeck)


def test_unknown_mmlgc_type_is_a_clear_error():
    from mmdet.registry import MODELS as MMDET_MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        with pytest.raises(KeyError, match='NoSuchModule'):
            MMDET_MODELS.build(dict(type='mmlgc.NoSuchModule'))


def test_detector_with_mmlgc_neck_runs_loss_and_predict(tmp_path):
    """A stock mmdet RetinaNet whose neck is an mmlgc module."""
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    config = tmp_path / 'retinanet.py'
    config.write_text(
        "_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'\n")
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.update(depth=18, init_cfg=None)
    cfg.model.neck = dict(
        type='mmlgc.ThrowawayNeck', in_channels=[64, 128, 256, 512],
        out_channels=32, num_outs=5)
    cfg.model.bbox_head.update(in_channels=32, feat_channels=32,
                               num_classes=4)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MMDET_MODELS.build(cfg.model)
        sample = DetDataSample(
            metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64),
                          ori_shape=(64, 64), scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[8., 8., 40., 40.]]),
            labels=torch.tensor([1]))
        data = model.data_preprocessor(
            dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)],
                 data_samples=[sample]), True)
        total, _ = model.parse_losses(model(**data, mode='loss'))
        assert total.requires_grad and torch.isfinite(total)
        model.eval()
        preds = model(**model.data_preprocessor(data, False), mode='predict')
    assert len(preds) == 1 and 'bboxes' in preds[0].pred_instances


def test_custom_imports_from_a_users_config(tmp_path, repo_root):
    """In a fresh interpreter, a user's mmdet config pulls mmlgc in through
    ``custom_imports`` alone and builds a model with an mmlgc module."""
    (tmp_path / 'user_plugin.py').write_text(
        textwrap.dedent('''
            from torch import nn
            from mmlgc.registry import MODELS

            @MODELS.register_module()
            class UserGroupedNeck(nn.Identity):
                def __init__(self, **kwargs):
                    super().__init__()
                    self.kwargs = kwargs
            '''))
    (tmp_path / 'user_config.py').write_text(
        textwrap.dedent('''
            _base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'
            custom_imports = dict(
                imports=['mmlgc', 'user_plugin'], allow_failed_imports=False)
            model = dict(neck=dict(_delete_=True, type='mmlgc.UserGroupedNeck',
                                   width=7))
            '''))
    script = textwrap.dedent(f'''
        import sys
        assert 'mmlgc' not in sys.modules
        from mmengine.config import Config
        cfg = Config.fromfile({str(tmp_path / 'user_config.py')!r})
        assert 'mmlgc' in sys.modules
        from mmengine.registry import DefaultScope
        from mmdet.registry import MODELS
        with DefaultScope.overwrite_default_scope('mmdet'):
            neck = MODELS.build(cfg.model.neck)
        assert type(neck).__name__ == 'UserGroupedNeck', type(neck)
        assert neck.kwargs == dict(width=7)
        # the stack fixes came with `custom_imports` too
        import mmengine.runner.checkpoint as ckpt
        assert type(ckpt.torch).__name__ == '_TrustedCheckpointTorch'
        print('ok')
        ''')
    result = subprocess.run([sys.executable, '-c', script],
                            cwd=tmp_path, capture_output=True, text=True,
                            env={'PYTHONPATH': str(tmp_path),
                                 'PATH': '/usr/bin:/bin'})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('ok')
