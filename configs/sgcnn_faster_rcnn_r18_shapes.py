# SG-CNN Faster R-CNN-R18 on the shapes data: the dense baseline
# (faster_rcnn_r18_shapes.py) with the SG-CNN ResNet-18 grouped to
# Conv-60/FC-60 by configs/pretrain/sgcnn_resnet18_shapes.py; masks frozen
# (they come with the checkpoint; no SelfGroupingHook).
_base_ = './faster_rcnn_r18_shapes.py'
custom_imports = dict(imports=['mmlgc'], allow_failed_imports=False)
pretrained = 'work_dirs/sgcnn_resnet18_shapes/epoch_2.pth'

model = dict(
    backbone=dict(
        type='mmlgc.SGCNNResNet', init_cfg=dict(checkpoint=pretrained)))
