# Dense RetinaNet-R18 baseline on the shapes data, initialised from the
# backbone pretrained by configs/pretrain/resnet18_shapes.py.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
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
    # 64 channels, as configs/faster_rcnn_r18_shapes.py.
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    bbox_head=dict(
        num_classes=4,
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        # Objects are 12-56 px: the smallest anchors are 16-25 px at P3.
        anchor_generator=dict(octave_base_scale=2)))

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
