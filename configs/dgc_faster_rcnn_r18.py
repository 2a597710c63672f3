# DGC Faster R-CNN-R18-FPN, COCO 1x (docs/dgc.md): DGC ResNet-18 (4 heads,
# keep 0.45: prune 55%), initialised from the DGC ImageNet pretraining
# (configs/pretrain/dgc_resnet18_8xb32_in1k.py), which ends at the final k:
# k stays there while fine-tuning (ramp 0, 0) and the saliency L1 term
# (λ 1e-5) keeps training the generators. The post-conv BNs stay frozen as
# in mmdet (norm_eval); DGC's pre-activation BNs keep batch statistics
# (dgc_norm_eval=False: see mmlgc.DGCResNet).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/dgc_resnet18_8xb32_in1k/epoch_120.pth'

model = dict(
    backbone=dict(
        type='mmlgc.DGCResNet',
        depth=18,
        heads=4,
        keep=0.45,
        dgc_norm_eval=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512]))

custom_hooks = [
    dict(type='mmlgc.DGCScheduleHook', ramp_begin=0., ramp_end=0.)
]

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
train_cfg = dict(type='mmlgc.ExactResumeEpochBasedTrainLoop')
default_hooks = dict(
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
