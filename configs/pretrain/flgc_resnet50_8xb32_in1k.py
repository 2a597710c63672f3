# FLGC ResNet-50 on ImageNet (docs/flgc.md): both 1x1 convs of every
# bottleneck FLGC with G = 8, groups and weights learnt together from
# scratch, as the paper trains its grouped networks end to end. The paper
# gives no ImageNet schedule (docs/flgc.md#configs), so this is
# mmpretrain's standard ResNet-50 recipe (100 epochs at batch 256, SGD lr 0.1,
# momentum 0.9, weight decay 1e-4, lr /10 at epochs 30, 60, 90), with one
# choice of ours: no weight decay on the assignment logits (decay pulls them
# towards ties, where the argmax flips at random). FLGCAssignmentHook logs
# the fraction of channels and filters whose group moved since the start.
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='mmlgc.FLGCResNet',
        depth=50,
        num_groups=8,
        # mmdet's ResNet (which FLGCResNet extends) freezes BN statistics by
        # default; classification trains them.
        norm_eval=False))

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
    max_epochs=100, val_interval=1)
default_hooks = dict(
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
