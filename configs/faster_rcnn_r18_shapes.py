# Dense Faster R-CNN-R18 baseline on the shapes data, initialised from the
# backbone pretrained by configs/pretrain/resnet18_shapes.py.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    './_base_/datasets/shapes_detection.py',
    './_base_/schedules/shapes_detection.py',
    'mmdet::_base_/default_runtime.py',
]
pretrained = 'work_dirs/resnet18_shapes/epoch_2.pth'

model = dict(
    backbone=dict(
        depth=18,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    # 64-channel FPN and heads: 4 classes of plain shapes need no more, and
    # a training step takes 0.75 s against 1.23 s at 128 channels (2 cores).
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        # Objects are 12-56 px: anchors of 16 px at P2 (stride 4).
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(
            out_channels=64, roi_layer=dict(sampling_ratio=2)),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=4)),
    # 1-5 objects an image: 64 sampled RoIs (16 positive) are ample, and on
    # a CPU mmcv's RoIAlign backward and the box head scale with the RoIs
    # (1.15 s a training step here, against 2.4 s with mmdet's 512).
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=200),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
