# MSGC Faster R-CNN-R18-FPN, COCO 1x (docs/msgc.md): MSGC ResNet-18
# (4 heads), MAC budget annealed to 0.49 of the dense backbone, initialised
# from configs/pretrain/msgc_resnet18_8xb32_in1k.py.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/msgc_resnet18_8xb32_in1k/epoch_120.pth'

model = dict(
    backbone=dict(
        type='mmlgc.MSGCResNet',
        depth=18,
        heads=4,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512]))

custom_hooks = [dict(type='mmlgc.MACBudgetHook', target=0.49)]
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'mask_generator': dict(decay_mult=0.)}))

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
train_cfg = dict(type='mmlgc.ExactResumeEpochBasedTrainLoop')
default_hooks = dict(
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
