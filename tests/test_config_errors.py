"""A bad config value of any mmlgc component is an error at build time that
names the argument and its value (mmlgc.utils.checks)."""
import pytest
import torch
from mmengine.registry import DefaultScope

from mmlgc.layers import (BinaryConcreteGate, DGCConv, FLGCConv2d,
                          MaskGenerator, SelfGatedMSGCConv2d,
                          TopKSaliencyGate)
from mmlgc.models.losses import MACBudget, SaliencyL1
from mmlgc.registry import HOOKS, MODELS

TINY = dict(depth=18, base_channels=8, stem_channels=8)
FPN = dict(in_channels=[8, 16], out_channels=16, num_outs=2)


def _model(type_, scope='mmdet', **kwargs):
    """Built as a config would, in its library's scope (the SG-CNN head's
    loss resolves in mmpretrain's, not in whatever scope a previous test
    left current)."""

    def build():
        with DefaultScope.overwrite_default_scope(scope):
            return MODELS.build(dict(type=f'mmlgc.{type_}', **kwargs))

    return build


def _hook(type_, **kwargs):
    return lambda: HOOKS.build(dict(type=f'mmlgc.{type_}', **kwargs))


# (id, build, exception, argument, value as the message shows it)
CASES = [
    # backbones: depth, method arguments, mmdet ResNet arguments
    ('MSGCResNet-depth', _model('MSGCResNet', depth=19), KeyError, 'depth',
     '19'),
    ('MSGCResNet-heads', _model('MSGCResNet', **TINY, heads=3), ValueError,
     'heads', '3'),
    ('MSGCResNet-heads0', _model('MSGCResNet', **TINY, heads=0), ValueError,
     'heads', '0'),
    ('MSGCResNet-squeeze', _model('MSGCResNet', **TINY, squeeze=0),
     ValueError, 'squeeze', '0'),
    ('MSGCResNet-tau', _model('MSGCResNet', **TINY, tau=0), ValueError,
     'tau', '0'),
    ('MSGCResNet-out_indices', _model('MSGCResNet', **TINY,
                                      out_indices=(1, 4)), ValueError,
     'out_indices', '(1, 4)'),
    ('MSGCResNet-frozen_stages', _model('MSGCResNet', **TINY,
                                        frozen_stages=5), ValueError,
     'frozen_stages', '5'),
    ('MSGCResNet-num_stages', _model('MSGCResNet', **TINY, num_stages=5),
     ValueError, 'num_stages', '5'),
    ('DGCResNet-depth', _model('DGCResNet', depth=20), KeyError, 'depth',
     '20'),
    ('DGCResNet-heads', _model('DGCResNet', **TINY, heads=3), ValueError,
     'heads', '3'),
    ('DGCResNet-keep0', _model('DGCResNet', **TINY, keep=0), ValueError,
     'keep', '0'),
    ('DGCResNet-keep', _model('DGCResNet', **TINY, keep=1.5), ValueError,
     'keep', '1.5'),
    ('DGCResNet-squeeze', _model('DGCResNet', **TINY, squeeze=0), ValueError,
     'squeeze', '0'),
    ('DGCResNet-out_indices', _model('DGCResNet', **TINY,
                                     out_indices=(0, 7)), ValueError,
     'out_indices', '(0, 7)'),
    ('DGCResNet-frozen_stages', _model('DGCResNet', **TINY,
                                       frozen_stages=-2), ValueError,
     'frozen_stages', '-2'),
    ('FLGCResNet-depth', _model('FLGCResNet', depth=26), KeyError, 'depth',
     '26'),
    ('FLGCResNet-num_groups', _model('FLGCResNet', **TINY, num_groups=0),
     ValueError, 'num_groups', '0'),
    ('FLGCResNet-init_std', _model('FLGCResNet', **TINY, init_std=-1.0),
     ValueError, 'init_std', '-1.0'),
    ('FLGCResNet-out_indices', _model('FLGCResNet', **TINY,
                                      out_indices=(5, )), ValueError,
     'out_indices', '(5,)'),
    ('FLGCResNet-frozen_stages', _model('FLGCResNet', **TINY,
                                        frozen_stages=9), ValueError,
     'frozen_stages', '9'),
    ('SGCNNResNet-depth', _model('SGCNNResNet', depth=20), KeyError, 'depth',
     '20'),
    ('SGCNNResNet-out_indices', _model('SGCNNResNet', **TINY,
                                       out_indices=(4, )), ValueError,
     'out_indices', '(4,)'),
    ('SGCNNResNet-frozen_stages', _model('SGCNNResNet', **TINY,
                                         frozen_stages=5), ValueError,
     'frozen_stages', '5'),
    # mmdet ResNet arguments the grouped convs cannot apply, and generator
    # widths: the user's value, not an internal one
    ('MSGCResNet-conv_cfg', _model('MSGCResNet', **TINY,
                                   conv_cfg=dict(type='ConvWS')),
     NotImplementedError, 'conv_cfg', "{'type': 'ConvWS'}"),
    ('DGCResNet-conv_cfg', _model('DGCResNet', **TINY,
                                  conv_cfg=dict(type='ConvWS')),
     NotImplementedError, 'conv_cfg', "{'type': 'ConvWS'}"),
    ('FLGCResNet-conv_cfg', _model('FLGCResNet', **TINY,
                                   conv_cfg=dict(type='ConvWS')),
     NotImplementedError, 'conv_cfg', "{'type': 'ConvWS'}"),
    ('SGCNNResNet-conv_cfg', _model('SGCNNResNet', **TINY,
                                    conv_cfg=dict(type='ConvWS')),
     NotImplementedError, 'conv_cfg', "{'type': 'ConvWS'}"),
    ('MSGCResNet-squeeze_default', _model('MSGCResNet', depth=18,
                                          base_channels=4, stem_channels=2),
     ValueError, 'squeeze', '4 (the default at depth 18)'),
    ('DGCResNet-squeeze_narrow', _model('DGCResNet', depth=18,
                                        base_channels=4, stem_channels=4,
                                        heads=2),
     ValueError, 'squeeze', '16'),
    ('FLGCResNet-depthwise', _model('FLGCResNet', **TINY, depthwise=True),
     ValueError, 'depthwise', 'True'),
    ('MSGCMobileNetV2-heads', _model('MSGCMobileNetV2', heads=5),
     ValueError, 'heads', '5'),
    ('MSGCMobileNetV2-squeeze', _model('MSGCMobileNetV2', squeeze=0),
     ValueError, 'squeeze', '0'),
    ('MSGCMobileNetV2-tau', _model('MSGCMobileNetV2', tau=-1.0), ValueError,
     'tau', '-1.0'),
    ('MSGCMobileNetV2-out_indices', _model('MSGCMobileNetV2',
                                           out_indices=(8, )), ValueError,
     'out_indices', '8'),
    ('MSGCMobileNetV2-frozen_stages', _model('MSGCMobileNetV2',
                                             frozen_stages=9), ValueError,
     'frozen_stages', '9'),
    ('FLGCMobileNetV2-num_groups', _model('FLGCMobileNetV2', num_groups=0),
     ValueError, 'num_groups', '0'),
    ('FLGCMobileNetV2-init_std', _model('FLGCMobileNetV2', init_std=-0.5),
     ValueError, 'init_std', '-0.5'),
    ('FLGCMobileNetV2-flgc_convs', _model('FLGCMobileNetV2',
                                          flgc_convs=('depthwise', )),
     ValueError, 'flgc_convs', 'depthwise'),
    ('FLGCMobileNetV2-out_indices', _model('FLGCMobileNetV2',
                                           out_indices=(9, )), ValueError,
     'out_indices', '9'),
    # necks
    ('MSGCFPN-heads', _model('MSGCFPN', **FPN, heads=3), ValueError, 'heads',
     '3'),
    ('MSGCFPN-squeeze', _model('MSGCFPN', **FPN, squeeze=0), ValueError,
     'squeeze', '0'),
    ('MSGCFPN-tau', _model('MSGCFPN', **FPN, tau=0), ValueError, 'tau', '0'),
    ('DGCFPN-heads', _model('DGCFPN', **FPN, heads=5), ValueError, 'heads',
     '5'),
    ('DGCFPN-keep', _model('DGCFPN', **FPN, keep=0.0), ValueError, 'keep',
     '0.0'),
    ('DGCFPN-keep2', _model('DGCFPN', **FPN, keep=2), ValueError, 'keep',
     '2'),
    ('DGCFPN-squeeze', _model('DGCFPN', **FPN, squeeze=-4), ValueError,
     'squeeze', '-4'),
    ('FLGCFPN-num_groups', _model('FLGCFPN', **FPN, num_groups=0),
     ValueError, 'num_groups', '0'),
    # heads
    ('SelfGroupedLinearClsHead-num_classes', _model(
        'SelfGroupedLinearClsHead', 'mmpretrain', num_classes=0,
        in_channels=8),
     ValueError, 'num_classes', '0'),
    # hooks
    ('MACBudgetHook-target0', _hook('MACBudgetHook', target=0), ValueError,
     'target', '0'),
    ('MACBudgetHook-target', _hook('MACBudgetHook', target=1.5), ValueError,
     'target', '1.5'),
    ('MACBudgetHook-loss_weight', _hook('MACBudgetHook', target=0.5,
                                        loss_weight=-30.0), ValueError,
     'loss_weight', '-30.0'),
    ('MACBudgetHook-anneal_end', _hook('MACBudgetHook', target=0.5,
                                       anneal_end=2), ValueError,
     'anneal_end', '2'),
    ('DGCScheduleHook-loss_weight', _hook('DGCScheduleHook',
                                          loss_weight=-1e-5), ValueError,
     'loss_weight', '-1e-05'),
    ('DGCScheduleHook-ramp_begin', _hook('DGCScheduleHook', ramp_begin=0.9),
     ValueError, 'ramp_begin', '0.9'),
    ('DGCScheduleHook-collect_iters', _hook('DGCScheduleHook',
                                            collect_iters=0), ValueError,
     'collect_iters', '0'),
    ('DGCScheduleHook-interval', _hook('DGCScheduleHook', interval=0),
     ValueError, 'interval', '0'),
    ('DGCScheduleHook-weighting', _hook('DGCScheduleHook', weighting='x'),
     ValueError, 'weighting', "'x'"),
    ('SelfGroupingHook-conv_ratio', _hook('SelfGroupingHook',
                                          conv_ratio=1.0), ValueError,
     'conv_ratio', '1.0'),
    ('SelfGroupingHook-fc_ratio', _hook('SelfGroupingHook', fc_ratio=-0.1),
     ValueError, 'fc_ratio', '-0.1'),
    ('SelfGroupingHook-step', _hook('SelfGroupingHook', step=0), ValueError,
     'step', '0'),
    ('SelfGroupingHook-scheme', _hook('SelfGroupingHook', scheme='local'),
     ValueError, 'scheme', "'local'"),
    ('SelfGroupingHook-interval', _hook('SelfGroupingHook', interval=0),
     ValueError, 'interval', '0'),
    ('SelfGroupingHook-groups', _hook('SelfGroupingHook', groups=0),
     ValueError, 'groups', '0'),
    ('FLGCAssignmentHook-top', _hook('FLGCAssignmentHook', top=-1),
     ValueError, 'top', '-1'),
    # losses
    ('MACBudget-loss_weight', lambda: MACBudget(loss_weight=-1), ValueError,
     'loss_weight', '-1'),
    ('MACBudget-target', lambda: MACBudget(target=0), ValueError, 'target',
     '0'),
    ('SaliencyL1-loss_weight', lambda: SaliencyL1(loss_weight=-1e-5),
     ValueError, 'loss_weight', '-1e-05'),
    # layers
    ('SelfGatedMSGCConv2d-heads', lambda: SelfGatedMSGCConv2d(8, 6, 3,
                                                              heads=4),
     ValueError, 'heads', '4'),
    ('DGCConv-heads', lambda: DGCConv(8, 6, 3, heads=4), ValueError, 'heads',
     '4'),
    ('DGCConv-keep', lambda: DGCConv(8, 8, 3, keep=0), ValueError, 'keep',
     '0'),
    ('DGCConv-mode', lambda: DGCConv(8, 8, 3, mode='layer'), ValueError,
     'mode', "'layer'"),
    ('FLGCConv2d-num_groups', lambda: FLGCConv2d(8, 8, 3, num_groups=0),
     ValueError, 'num_groups', '0'),
    ('FLGCConv2d-logit_init', lambda: FLGCConv2d(8, 8, 3, logit_init='x'),
     ValueError, 'logit_init', "'x'"),
    ('MaskGenerator-squeeze', lambda: MaskGenerator(8, 8, squeeze=0),
     ValueError, 'squeeze', '0'),
    ('BinaryConcreteGate-tau', lambda: BinaryConcreteGate(tau=0), ValueError,
     'tau', '0'),
    ('TopKSaliencyGate-tie_break', lambda: TopKSaliencyGate('random'),
     ValueError, 'tie_break', "'random'"),
]


@pytest.mark.parametrize('build, error, argument, value',
                         [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_value_names_argument_and_value(build, error, argument, value):
    with pytest.raises(error) as info:
        build()
    message = str(info.value)
    assert argument in message and value in message, message


def test_every_registered_component_is_covered():
    """A new mmlgc model or hook gets its bad-value cases here."""
    covered = {case[0].split('-')[0] for case in CASES}
    # Only mmlgc's own classes: tests may register throwaway modules.
    registered = {
        name for registry in (MODELS, HOOKS)
        for name, cls in registry.module_dict.items()
        if cls.__module__.startswith('mmlgc.')}
    # Runtime components without value arguments of their own (DDP, resume,
    # checkpoints, model averaging: mmengine's classes, mmengine's checks).
    others = {'AllReduceSyncBN', 'RandomStateHook', 'AtomicCheckpointHook',
              'CheckpointChecksHook', 'ExponentialMovingAverage',
              'MomentumAnnealingEMA', 'StochasticWeightAverage'}
    assert registered - others <= covered


def test_message_form():
    with pytest.raises(ValueError) as info:
        _model('DGCResNet', **TINY, keep=0)()
    assert 'DGCResNet: keep=0 must be in (0, 1]' in str(info.value)
    with pytest.raises(ValueError) as info:
        _model('MSGCResNet', **TINY, heads=3)()
    assert ('MSGCResNet: heads=3 must be a divisor of the stage widths '
            '[8, 16, 32, 64]') in str(info.value)


@pytest.mark.parametrize('neck', ['MSGCFPN', 'DGCFPN', 'FLGCFPN'])
def test_neck_in_channels_not_matching_the_backbone(neck):
    """mmdet builds the backbone and the neck separately: a wrong
    ``in_channels`` surfaces at the first forward, where the grouped necks
    name each level's channels against what they expect."""
    model = _model(neck, **FPN)()
    features = [torch.zeros(1, 8, 8, 8), torch.zeros(1, 32, 4, 4)]
    with pytest.raises(ValueError) as info:
        model(features)
    assert (f"{neck}: in_channels=[8, 16] does not match the backbone's "
            'outputs [8, 32] (level 1: 32 vs 16, backbone vs neck)'
            ) in str(info.value)
    with pytest.raises(ValueError, match=r'\(1 levels vs 2\)'):
        model(features[:1])
