"""The shell every grouped ResNet shares: mmdet's ResNet with the method's
blocks, and the blocks' common part.

A method adds a block pair and a short backbone:

* its blocks mix :class:`GroupedBlockMixin` in before mmdet's ``BasicBlock``
  / ``Bottleneck``, take their own arguments and pass mmdet's on
  (``**kwargs``), as mmdet's ResNeXt and ResNeSt blocks do;
* its backbone subclasses :class:`GroupedResNet` with
  ``arch_settings = grouped_arch_settings(Basic, Bottleneck)`` and hands
  the block arguments to ``super().__init__``.

The shell also restores mmdet ResNet behaviour that mmdet keys on its own
block classes:

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
from typing import Optional, Tuple

from mmcv.cnn import build_conv_layer
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from torch import Tensor, nn

from ...complexity import CostReporter, conv_macs, conv_output_size
from ...deploy import DeployableBackboneMixin
from ...utils.checks import check_resnet_args, check_unsupported
from .dense_counterpart import DenseCounterpartMixin


def grouped_arch_settings(basic_block: type, bottleneck: type) -> dict:
    """mmdet ResNet's ``arch_settings`` (depth 18/34/50/101/152) with the
    method's blocks in place of mmdet's."""
    return {
        depth: (basic_block if block is BasicBlock else bottleneck, stages)
        for depth, (block, stages) in ResNet.arch_settings.items()
    }


class GroupedBlockMixin(CostReporter):
    """Mixed in before mmdet's ``BasicBlock`` / ``Bottleneck``: refuses the
    mmdet block arguments the grouped convs cannot honour (``dcn``,
    ``plugins``, a ``conv_cfg`` that builds anything but ``nn.Conv2d``) and
    passes the others on.

    A block names ``replaced_by`` (for the messages: ``'the MSGC
    convs'``) and may override :meth:`fold_group_orders`.
    """

    #: What replaces the block's convs, as the refusals name it.
    replaced_by: str = 'the grouped convs'
    #: Why ``dcn`` / ``plugins`` cannot apply; default: the grouped convs
    #: replace the convs they would modify.
    unsupported_reason: Optional[str] = None

    def __init__(self, inplanes, planes, **kwargs):
        owner = type(self).__name__
        check_unsupported(
            owner, self.unsupported_reason or
            f'{self.replaced_by} replace the convs they would modify',
            dcn=kwargs.pop('dcn', None),
            plugins=kwargs.pop('plugins', None))
        check_block_conv_cfg(owner, kwargs.get('conv_cfg'),
                             self.replaced_by)
        super().__init__(inplanes, planes, **kwargs)

    def _replace_convs(self, names: Tuple[str, ...], make) -> None:
        """``self.<name> = make(self.<name>)`` for each of ``names``."""
        for name in names:
            setattr(self, name, make(getattr(self, name)))

    def fold_group_orders(self) -> None:
        """Fold the ragged convs' output reorders within the block (see
        :meth:`~mmlgc.deploy.DeployableBackboneMixin.fold_group_orders`);
        default: none to fold."""


class GroupedResNet(DenseCounterpartMixin, DeployableBackboneMixin,
                    CostReporter, ResNet):
    """mmdet's ``ResNet`` with a method's blocks: checks the depth and the
    stage arguments, refuses ``deep_stem``, passes ``block_kwargs`` to every
    block, gives the blocks mmdet's zero-initialised last norm under mmdet's
    own condition (its default init: no ``init_cfg``, no ``pretrained``,
    ``zero_init_residual=True``) and reports the stem's MACs.

    ``mmdet_default_init`` says whether that default init (Kaiming convs,
    norms at 1) is the one ``init_weights`` applies, for backbones that
    correct what it does to their own convs.

    A subclass sets ``arch_settings`` (:func:`grouped_arch_settings`) and
    ``stem_pool_ops``, and ends its ``__init__`` with
    ``self.init_deploy(deploy)`` once its own set-up is done.
    """

    dense_class = ResNet
    #: Ops per max-pool output counted for the stem: 4 in MSGC's convention
    #: (``mmlgc.complexity``), 9 in the DGC reference counter's.
    stem_pool_ops: int = 4

    def __init__(self, depth: int, block_kwargs: dict, **kwargs):
        block, _ = self.check_arch(depth, kwargs)
        self.mmdet_default_init = (kwargs.get('init_cfg') is None
                                   and kwargs.get('pretrained') is None)
        self._block_init_cfg = None
        if self.mmdet_default_init and kwargs.get('zero_init_residual', True):
            self._block_init_cfg = dict(
                type='Constant', val=0, override=dict(name=last_norm(block)))
        # ResLayer passes the arguments it does not know on to the blocks.
        self._block_kwargs = block_kwargs
        super().__init__(depth, **kwargs)
        if self.deep_stem:
            raise NotImplementedError(
                f'{type(self).__name__}: deep_stem=True is not supported: '
                'the standard stem only')

    @classmethod
    def check_arch(cls, depth: int, kwargs: dict) -> Tuple[type, list]:
        """The block of ``depth`` and the stage widths, once ``depth`` and
        the mmdet ``ResNet`` arguments in ``kwargs`` are checked (errors name
        the backbone). Checks only, so a backbone may call it before its own
        checks and ``__init__`` calls it again."""
        if depth not in cls.arch_settings:
            raise KeyError(f'invalid depth {depth} for {cls.__name__}; '
                           f'choose from {sorted(cls.arch_settings)}')
        return (cls.arch_settings[depth][0],
                check_resnet_args(cls.__name__, kwargs))

    def make_res_layer(self, **kwargs):
        if kwargs.get('init_cfg') is None:
            kwargs['init_cfg'] = self._block_init_cfg
        return super().make_res_layer(**kwargs, **self._block_kwargs)

    def fold_group_orders(self):
        """Each block folds its own reorders; the last conv of a block feeds
        the residual add (or the next block's two readers) and keeps its
        ``index_select``."""
        for name in self.res_layers:
            for block in getattr(self, name):
                block.fold_group_orders()

    def forward(self, x: Tensor):
        stem = conv_output_size(x.shape[2:], 7, 2, 3, 1)
        pooled = conv_output_size(stem, 3, 2, 1, 1)
        # The 7x7 conv with one op per output (its BN, or DGC's ReLU), then
        # the max-pool.
        stem_macs = (conv_macs(x.shape[1], self.stem_channels, 7, stem) +
                     self.stem_pool_ops * self.stem_channels * pooled[0] *
                     pooled[1])
        self.report_cost(stem_macs, stem_macs, x.shape[0], x.device)
        return super().forward(x)


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
