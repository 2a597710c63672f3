# DGC ResNet-50 on ImageNet, the DGC reference recipe (docs/dgc.md): from
# scratch, 120 epochs at batch 256 (8 GPUs x 32), SGD Nesterov (lr 0.1,
# momentum 0.9), weight decay 1e-4 on every parameter, cosine decay to 0
# per iteration, plain cross-entropy; saliency L1 λ 1e-5; k ramps from 0 at
# 1/12 of training to round(0.55·C) at 3/4, then stays. The reference
# released ResNet-18 only; ResNet-50 takes the same recipe with every conv
# of a Bottleneck DGC (see mmlgc.DGCResNet).
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
max_epochs = 120

# norm_eval=False: mmdet's ResNet arguments default to frozen BN statistics
# (detection), mmpretrain's ResNet (the base config's) to training ones; a
# network trained from scratch needs them trained. zero_init_residual=False:
# as the reference, no zero-initialised last BN (BN weights 1; mmdet's
# default zeroes each block's last BN). Its convs are Kaiming normal
# (fan_out, ReLU) with each DGC head a [O/G, C, k, k] conv of its own:
# mmlgc.DGCResNet gives its DGC convs that per-head fan_out (O/G·k²), i.e.
# sqrt(G) = 2 times the spread mm*'s Kaiming init gives the dense weight.
model = dict(
    backbone=dict(
        type='mmlgc.DGCResNet',
        depth=50,
        heads=4,
        keep=0.45,
        norm_eval=False,
        zero_init_residual=False))

optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True)
]
# _delete_: mmengine refuses by_epoch (mmpretrain's base) beside a type.
train_cfg = dict(
    _delete_=True,
    type='mmlgc.ExactResumeEpochBasedTrainLoop',  # exact mid-epoch resume
    max_epochs=max_epochs, val_interval=1)
custom_hooks = [dict(type='mmlgc.DGCScheduleHook', loss_weight=1e-5)]
auto_scale_lr = dict(base_batch_size=256)

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
default_hooks = dict(
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
