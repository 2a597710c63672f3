from .msgc_mobilenet_v2 import MSGCMobileNetV2
from .msgc_resnet import MSGCResNet

__all__ = ['MSGCMobileNetV2', 'MSGCResNet']
