"""mmdet ResNet behaviour that mmdet keys on its own block classes, for the
grouped ResNets (whose blocks subclass mmdet's ``BasicBlock`` /
``Bottleneck``).

* ``zero_init_residual``: mmdet's ResNet zeroes the last norm of every
  residual branch, but only when ``block is BasicBlock`` / ``block is
  Bottleneck``: an identity check that a subclass fails, so the flag (default
  True) was silently ignored. Every grouped block keeps mmdet's forward
  order, so ``norm2`` (BasicBlock) / ``norm3`` (Bottleneck) is still the last
  norm before the residual add (DGC's pre-activation norms sit inside its
  convs, before them).
* ``conv_cfg``: the grouped convs replace the convs mmdet builds from it, so
  a weight-standardised or otherwise modified conv would be dropped without
  a word: refused, unless it builds a plain ``nn.Conv2d``.
"""
from mmcv.cnn import build_conv_layer
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from torch import nn


class GroupedResNetMixin:
    """Mixed in before mmdet's ``ResNet``: gives the blocks mmdet's
    zero-initialised last norm under mmdet's own condition (its default
    init: no ``init_cfg``, no ``pretrained``, ``zero_init_residual=True``).

    ``mmdet_default_init`` says whether that default init (Kaiming convs,
    norms at 1) is the one ``init_weights`` applies, for backbones that
    correct what it does to their own convs.
    """

    def __init__(self, depth, **kwargs):
        self.mmdet_default_init = (kwargs.get('init_cfg') is None
                                   and kwargs.get('pretrained') is None)
        self._block_init_cfg = None
        if self.mmdet_default_init and kwargs.get('zero_init_residual', True):
            self._block_init_cfg = dict(
                type='Constant',
                val=0,
                override=dict(name=last_norm(self.arch_settings[depth][0])))
        super().__init__(depth, **kwargs)

    def make_res_layer(self, **kwargs):
        if kwargs.get('init_cfg') is None:
            kwargs['init_cfg'] = self._block_init_cfg
        return super().make_res_layer(**kwargs)


def last_norm(block: type) -> str:
    """Name of the norm that ends the residual branch of ``block``."""
    if issubclass(block, Bottleneck):
        return 'norm3'
    if issubclass(block, BasicBlock):
        return 'norm2'
    raise TypeError(f'{block.__name__} is no mmdet BasicBlock or Bottleneck')


def check_block_conv_cfg(owner: str, conv_cfg, replaced_by: str) -> None:
    """Refuse a ``conv_cfg`` that builds anything but a plain ``nn.Conv2d``:
    ``replaced_by`` ('the MSGC convs') takes the place of those convs and
    cannot apply it."""
    if conv_cfg is None:
        return
    if type(build_conv_layer(conv_cfg, 1, 1, 1)) is not nn.Conv2d:
        raise NotImplementedError(
            f'{owner}: conv_cfg={conv_cfg!r} is not supported: '
            f'{replaced_by} replace the convs it would build; use '
            'conv_cfg=None')
