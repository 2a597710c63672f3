# SG-CNN Faster R-CNN-R50-FPN, COCO 1x (docs/sgcnn.md, docs/detection.md):
# mmdet's recipe with the SG-CNN ResNet-50 grouped to Conv-60/FC-60 on ImageNet
# (configs/pretrain/sgcnn_resnet50_8xb32_in1k.py). Its masks come with the
# checkpoint (persistent buffers, init_cfg prefix backbone.) and stay frozen:
# no SelfGroupingHook here, only the weights fine-tune. (The paper's transfer
# number, 30.9 mAP at Conv-60, is a C4 Faster R-CNN at 600 px.)
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/sgcnn_resnet50_8xb32_in1k/epoch_120.pth'

model = dict(
    backbone=dict(
        type='mmlgc.SGCNNResNet',
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

# mmlgc's runtime (docs/reliability.md): exact mid-epoch resume, random
# generator states in checkpoints, atomic checkpoint writes, clear errors for
# bad checkpoints.
train_cfg = dict(type='mmlgc.ExactResumeEpochBasedTrainLoop')
default_hooks = dict(
    checkpoint=dict(type='mmlgc.AtomicCheckpointHook'),
    random_state=dict(type='mmlgc.RandomStateHook'),
    checkpoint_checks=dict(type='mmlgc.CheckpointChecksHook'))
