# DGC RetinaNet-R50-FPN, COCO 1x (docs/dgc.md): mmdet's recipe with the
# DGC ResNet-50 (4 heads, keep 0.45), initialised from the DGC ImageNet
# pretraining (configs/pretrain/dgc_resnet50_8xb32_in1k.py); k fixed at its
# final value while fine-tuning, saliency L1 λ 1e-5; pre-activation BNs keep
# batch statistics (see configs/dgc_faster_rcnn_r18.py).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/dgc_resnet50_8xb32_in1k/epoch_120.pth'

model = dict(
    backbone=dict(
        type='mmlgc.DGCResNet',
        heads=4,
        keep=0.45,
        dgc_norm_eval=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

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
