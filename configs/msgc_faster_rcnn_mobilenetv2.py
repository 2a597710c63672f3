# MSGC Faster R-CNN with an MSGC MobileNetV2-FPN, COCO 1x (docs/msgc.md):
# 4-head projections, MAC budget annealed to 0.65 of the dense backbone,
# initialised from configs/pretrain/msgc_mobilenetv2_8xb32_in1k.py.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/msgc_mobilenetv2_8xb32_in1k/epoch_150.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlgc.MSGCMobileNetV2',
        heads=4,
        out_indices=(1, 2, 4, 6),  # strides 4, 8, 16, 32
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[24, 32, 96, 320]))

custom_hooks = [dict(type='mmlgc.MACBudgetHook', target=0.65)]
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
