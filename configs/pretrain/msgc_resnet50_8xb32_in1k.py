# MSGC ResNet-50 on ImageNet, the reference recipe (docs/msgc.md): start from
# torchvision's dense weights, 120 epochs at batch 256 (8 GPUs x 32), SGD
# Nesterov, cosine per epoch, label smoothing 0.1; three parameter groups:
# mask generators lr 0.075 without weight decay, other BN parameters lr 0.015
# without weight decay, everything else lr 0.015 with weight decay 1e-4.
# MAC budget annealed from 1 to 0.457 over the first half of training.
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
depth = 50
target = 0.457
max_epochs = 120

model = dict(
    backbone=dict(
        type='mmlgc.MSGCResNet',
        depth=depth,
        heads=4,
        # mmdet's ResNet (which MSGCResNet extends) freezes BN statistics by
        # default; classification trains them, the generators' included.
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=f'torchvision://resnet{depth}')),
    head=dict(
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')))

optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.015, momentum=0.9, weight_decay=1e-4,
        nesterov=True),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={'mask_generator': dict(lr_mult=5., decay_mult=0.)}))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs)
]
# _delete_: mmengine refuses by_epoch (mmpretrain's base) beside a type.
train_cfg = dict(
    _delete_=True,
    type='mmlgc.ExactResumeEpochBasedTrainLoop',  # exact mid-epoch resume
    max_epochs=max_epochs, val_interval=1)
custom_hooks = [dict(type='mmlgc.MACBudgetHook', target=target)]
auto_scale_lr = dict(base_batch_size=256)

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
default_hooks = dict(
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
