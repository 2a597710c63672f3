# FLGC RetinaNet-R18 on the shapes data: the dense baseline
# (retinanet_r18_shapes.py) with the FLGC ResNet-18 (G = 2) pretrained by
# configs/pretrain/flgc_resnet18_shapes.py; the groups keep learning, logits
# without weight decay.
_base_ = './retinanet_r18_shapes.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/flgc_resnet18_shapes/epoch_2.pth'

model = dict(
    backbone=dict(
        type='mmlgc.FLGCResNet',
        num_groups=2,
        init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'group_logits': dict(decay_mult=0.)}))
custom_hooks = [dict(type='mmlgc.FLGCAssignmentHook')]
