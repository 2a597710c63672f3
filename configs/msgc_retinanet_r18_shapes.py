# MSGC RetinaNet-R18 on the shapes data: the dense baseline
# (retinanet_r18_shapes.py) with the MSGC ResNet-18 pretrained by
# configs/pretrain/msgc_resnet18_shapes.py and a MAC budget of 0.5.
_base_ = './retinanet_r18_shapes.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/msgc_resnet18_shapes/epoch_2.pth'

model = dict(
    backbone=dict(
        type='mmlgc.MSGCResNet',
        heads=4,
        init_cfg=dict(checkpoint=pretrained)))
custom_hooks = [dict(type='mmlgc.MACBudgetHook', target=0.5)]
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'mask_generator': dict(decay_mult=0.)}))
