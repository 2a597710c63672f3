# MSGC MobileNetV2 on ImageNet, the reference recipe (docs/msgc.md): start
# from torchvision's mobilenet_v2 weights (renamed on load), 150 epochs at
# batch 256, SGD Nesterov, cosine per epoch, label smoothing 0.1, the three
# parameter groups of the ResNet recipe; MAC budget annealed to 0.65.
_base_ = 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
max_epochs = 150

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlgc.MSGCMobileNetV2',
        heads=4,
        out_indices=(7, ),
        init_cfg=dict(
            type='Pretrained', checkpoint='torchvision://mobilenet_v2')),
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
custom_hooks = [dict(type='mmlgc.MACBudgetHook', target=0.65)]
auto_scale_lr = dict(base_batch_size=256)

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
default_hooks = dict(
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
