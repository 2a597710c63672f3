# SG-CNN ResNet-50 on ImageNet, Conv-60/FC-60 with global fine-tuning only
# (docs/sgcnn.md; reported 1.91 G / 11.88 M / 75.20% top-1): all six
# grouping steps (10% ... 60%) back to back before training, then the
# 90-epoch fine-tune of ./sgcnn_resnet50_8xb32_in1k.py.
_base_ = './sgcnn_resnet50_8xb32_in1k.py'
max_epochs = 90

param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs,
         milestones=[30, 60], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    dict(type='mmlgc.SelfGroupingHook', conv_ratio=0.6, fc_ratio=0.6,
         step=0.1, groups=16, scheme='global')
]
