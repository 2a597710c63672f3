# FLGC MobileNetV2 on ImageNet (docs/flgc.md: G = 8 on the 1x1 convs, the
# expansion and projection of every inverted residual), learnt from scratch
# with mmpretrain's MobileNetV2 recipe (300 epochs at batch 256, SGD lr
# 0.045, weight decay 4e-5, lr x0.98 per epoch); no weight decay on the
# assignment logits (our choice, see ./flgc_resnet50_8xb32_in1k.py).
_base_ = 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlgc.FLGCMobileNetV2',
        num_groups=8,
        out_indices=(7, )))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'group_logits': dict(decay_mult=0.)}))
custom_hooks = [dict(type='mmlgc.FLGCAssignmentHook')]

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
# mmpretrain's schedule; _delete_: mmengine refuses its by_epoch beside a
# type.
train_cfg = dict(
    _delete_=True, type='mmlgc.ExactResumeEpochBasedTrainLoop',
    max_epochs=300, val_interval=1)
default_hooks = dict(
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
