from .sgcnn_cls_head import SelfGroupedLinearClsHead

__all__ = ['SelfGroupedLinearClsHead']
