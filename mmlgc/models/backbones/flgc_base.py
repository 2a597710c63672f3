"""What every FLGC backbone shares: dense checkpoints without assignment
logits, deploy (ragged group convs with the channel orders folded), and the
fold through a depthwise conv."""
from torch import nn

from ...complexity import CostReporter
from ...deploy import DeployableBackboneMixin
from ...layers import FLGCConv2d, RaggedGroupConv2d, fold_output_order
from ..dense_checkpoints import keep_method_state_on_dense_load


class FLGCBackboneMixin(DeployableBackboneMixin, CostReporter):
    """Backbone-level FLGC behaviour.

    * Dense checkpoints: a torchvision / mmpretrain / mmdet state dict of the
      dense network has every weight (FLGC keeps dense shapes and names);
      the assignment logits it cannot have keep their initialisation, said
      in one log line instead of a list of missing keys.
    * ``switch_to_deploy`` (from :class:`~mmlgc.deploy.
      DeployableBackboneMixin`): BN folded, every :class:`FLGCConv2d`
      replaced by its :class:`~mmlgc.layers.RaggedGroupConv2d`, then
      :meth:`fold_group_orders` (each backbone knows its topology) moves
      the group order of every ragged output that has a single consumer
      into that consumer.
    """

    def _setup_flgc(self) -> None:
        keep_method_state_on_dense_load(
            self, lambda absent: 'group assignment logits for '
            f'{len(absent) // 2} FLGC convs')

    def flgc_layers(self):
        """``(name, FLGCConv2d)`` pairs (empty once deployed)."""
        return [(name, m) for name, m in self.named_modules()
                if isinstance(m, FLGCConv2d)]


def fold_through_depthwise(producer: RaggedGroupConv2d,
                           depthwise: nn.Conv2d, consumer: nn.Module) -> None:
    """:func:`~mmlgc.layers.fold_output_order` across a depthwise conv
    (and the BN/activation folded or elementwise around it): the depthwise
    conv's channels are permuted into the producer's group order, so it
    passes that order on to ``consumer``, which then reads it."""
    if depthwise.groups != depthwise.in_channels or \
            depthwise.in_channels != depthwise.out_channels:
        raise TypeError('fold_through_depthwise needs a depthwise conv')
    order = producer.filter_order.to(depthwise.weight.device)
    depthwise.weight = nn.Parameter(
        depthwise.weight.detach().index_select(0, order))
    if depthwise.bias is not None:
        depthwise.bias = nn.Parameter(
            depthwise.bias.detach().index_select(0, order))
    fold_output_order(producer, consumer)
