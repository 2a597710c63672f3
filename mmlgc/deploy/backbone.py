"""Deploy behaviour shared by every mmlgc backbone."""
from typing import Tuple, Type

from mmcv.cnn import fuse_conv_bn
from torch import nn

from ..layers.static_groups import replace_masked_convs
from ..ops.plans import plan_max_pools


class DeployableBackboneMixin:
    """``switch_to_deploy`` (BN folded into the convs, learnable grouped
    convs run sparsely through :mod:`mmlgc.ops`), an inference-only guard on
    ``train`` and :meth:`sparse_eval`.

    A backbone lists in ``sparse_types`` its conv classes that have a
    ``sparse_eval`` flag (sparse through the ops in eval, or the masked dense
    form the references measure).
    """

    sparse_types: Tuple[Type[nn.Module], ...] = ()

    def init_deploy(self, deploy: bool) -> None:
        """End of ``__init__``: ``deploy=True`` builds the deployed
        structure (:meth:`switch_to_deploy`), so ``tools/deploy.py`` output
        loads."""
        self.deploy = False
        if deploy:
            self.switch_to_deploy()

    def switch_to_deploy(self):
        """Fold every BN into the conv before it and run the grouped convs
        sparsely through :mod:`mmlgc.ops`: dynamic ones in sparse eval,
        static ones (:class:`~mmlgc.layers.ConnectionMaskedConv2d`) replaced
        by ragged group convs, whose channel reorders
        :meth:`fold_group_orders` may then fold into their consumers; max
        pools by :class:`~mmlgc.ops.plans.PlannedMaxPool2d` (ATen's NCHW max
        pool was the slowest layer of a ResNet stem here). Every grouped
        conv and pool then runs the fastest exact execution measured on
        this CPU (:mod:`mmlgc.ops.plans`).

        The result is an inference-only backbone: its state dict has conv
        biases and no BN entries (only BNs that follow a conv are folded),
        which ``deploy=True`` in the config reproduces, so
        ``tools/deploy.py`` output loads into it.
        """
        self.eval()
        fuse_conv_bn(self)
        if replace_masked_convs(self):
            self.fold_group_orders()
        plan_max_pools(self)
        self.sparse_eval(True)
        self.deploy = True
        return self

    def fold_group_orders(self):
        """Fold the ragged convs' output reorders into their single
        consumers (:func:`~mmlgc.layers.static_groups.fold_output_order`);
        a backbone that knows its topology overrides this. Default: keep the
        reorders (always correct)."""

    def train(self, mode: bool = True):
        if mode and getattr(self, 'deploy', False):
            raise RuntimeError(
                f'a deployed {type(self).__name__} (BN folded into the '
                'convs) is for inference only')
        super().train(mode)  # mm* backbones' train() returns None
        return self

    def sparse_eval(self, enabled: bool = True):
        """Choose how the grouped convs run in eval: sparse through the ops
        (default) or the reference's masked dense form (for comparisons)."""
        for module in self.modules():
            if isinstance(module, self.sparse_types):
                module.sparse_eval = enabled
        return self
