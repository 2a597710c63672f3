# FLGC RetinaNet-R50-FPN, COCO 1x (docs/flgc.md, docs/detection.md): mmdet's
# recipe with the FLGC ResNet-50 (G = 8 on the 1x1 convs), initialised from the
# FLGC ImageNet pretraining (configs/pretrain/flgc_resnet50_8xb32_in1k.py),
# whose assignment logits the checkpoint carries. The groups keep learning
# while fine-tuning (frozen stage 1 keeps its own); no weight decay on the
# logits.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/flgc_resnet50_8xb32_in1k/epoch_100.pth'

model = dict(
    backbone=dict(
        type='mmlgc.FLGCResNet',
        num_groups=8,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'group_logits': dict(decay_mult=0.)}))
custom_hooks = [dict(type='mmlgc.FLGCAssignmentHook')]

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
train_cfg = dict(type='mmlgc.ExactResumeEpochBasedTrainLoop')
default_hooks = dict(
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
