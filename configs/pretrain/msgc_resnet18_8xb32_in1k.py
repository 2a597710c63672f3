# MSGC ResNet-18 on ImageNet: the ResNet-50 recipe (see that config) with a
# MAC budget of 0.49.
_base_ = './msgc_resnet50_8xb32_in1k.py'
depth = 18
target = 0.49

model = dict(
    backbone=dict(
        depth=depth,
        init_cfg=dict(checkpoint=f'torchvision://resnet{depth}')),
    head=dict(in_channels=512))
custom_hooks = [dict(type='mmlgc.MACBudgetHook', target=target)]
