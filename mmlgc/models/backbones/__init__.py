from .dgc_resnet import DGCResNet
from .msgc_mobilenet_v2 import MSGCMobileNetV2
from .msgc_resnet import MSGCResNet

__all__ = ['DGCResNet', 'MSGCMobileNetV2', 'MSGCResNet']
