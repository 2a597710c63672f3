# DGC ResNet-18 on ImageNet, the reference's setting (docs/dgc.md: 4 heads,
# prune 55%, both 3x3 convs and the stride-2 downsample 1x1 DGC; reported
# 68.78% top-1 at about 0.89 GMACs): the recipe of
# ./dgc_resnet50_8xb32_in1k.py.
_base_ = './dgc_resnet50_8xb32_in1k.py'

model = dict(backbone=dict(depth=18), head=dict(in_channels=512))
