# MSGC ResNet-18 on the shapes classification split, as the MSGC reference
# trains on ImageNet: start from the dense backbone
# (configs/pretrain/resnet18_shapes.py), anneal the MAC budget from 1 to 0.5
# over the first half, mask generators at 5x lr without weight decay.
_base_ = './resnet18_shapes.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
dense = 'work_dirs/resnet18_shapes/epoch_2.pth'
max_epochs = 2

model = dict(
    backbone=dict(
        type='mmlgc.MSGCResNet',
        heads=4,
        # mmdet's ResNet (which MSGCResNet extends) freezes BN statistics by
        # default; classification trains them, the generators' included.
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=dense,
                      prefix='backbone.')))
# A third of the dense run's lr: at 5e-4 (generators 2.5e-3) the budget
# closed layer4 to 0.13 of its MACs and top-1 fell to 28.5 % (detector mAP
# 0.076); at 1e-4, 0.42 and 33.1 % (mAP 0.136; the demo, seed 0).
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={'mask_generator': dict(lr_mult=5., decay_mult=0.)}))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
custom_hooks = [dict(type='mmlgc.MACBudgetHook', target=0.5)]
