# MSGC ResNet-18 on the shapes classification split, as the MSGC reference
# trains on ImageNet: start from the dense backbone
# (configs/pretrain/resnet18_shapes.py), anneal the MAC budget from 1 to 0.5
# over the first half, mask generators at 5x lr without weight decay.
_base_ = './resnet18_shapes.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
dense = 'work_dirs/resnet18_shapes/epoch_4.pth'
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
optim_wrapper = dict(
    optimizer=dict(lr=5e-4),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={'mask_generator': dict(lr_mult=5., decay_mult=0.)}))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
custom_hooks = [dict(type='mmlgc.MACBudgetHook', target=0.5)]
