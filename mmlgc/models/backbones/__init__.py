from .dgc_resnet import DGCResNet
from .flgc_mobilenet_v2 import FLGCMobileNetV2
from .flgc_resnet import FLGCResNet
from .msgc_mobilenet_v2 import MSGCMobileNetV2
from .msgc_resnet import MSGCResNet
from .sgcnn_resnet import SGCNNResNet

__all__ = [
    'DGCResNet', 'FLGCMobileNetV2', 'FLGCResNet', 'MSGCMobileNetV2',
    'MSGCResNet', 'SGCNNResNet'
]
