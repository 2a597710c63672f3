# The paper's depthwise-separable FLGC ResNet-50 (docs/flgc.md: "5x CPU
# speed over ResNet-50"): every bottleneck's 3x3 conv depthwise, its 1x1
# convs FLGC (G = 8); 0.72 G MACs at 224² against 4.10 G (ResNet-50, MSGC
# convention, head included). Recipe of ./flgc_resnet50_8xb32_in1k.py.
_base_ = './flgc_resnet50_8xb32_in1k.py'

model = dict(backbone=dict(depthwise=True))
