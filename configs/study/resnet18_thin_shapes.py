# The study's uniformly thinner ResNet-18 (static channel pruning,
# tools/analysis/study.py): every stage at `width` instead of 64 channels
# (stem included), so the backbone costs about (width/64)^2 of the dense
# MACs; otherwise the dense shapes pretraining recipe. tools/analysis/study.py
# sets the width per MAC budget (model.backbone.stem_channels,
# .base_channels, model.head.in_channels = 8 x width) and initialises
# backbone and head from the dense checkpoint cut to the first channels of
# every layer (init_cfg type Pretrained); alone, this trains from scratch.
_base_ = '../pretrain/resnet18_shapes.py'
width = 45

model = dict(
    backbone=dict(stem_channels=width, base_channels=width),
    head=dict(in_channels=8 * width))
