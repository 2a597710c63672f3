"""What every MSGC backbone shares: block generators and the backbone-level
behaviour (dense checkpoints, deploy, generator initialisation).

A block mixes in :class:`MSGCBlockMixin` next to the mm* block it extends; a
backbone mixes in :class:`MSGCBackboneMixin` next to the mm* backbone.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ...complexity import CostReporter, collect_costs
from ...deploy import DeployableBackboneMixin
from ...layers import AttentionGenerator, MaskGenerator, MSGCConv2d
from ...utils.checks import check_divides, check_positive
from ..dense_checkpoints import keep_method_state_on_dense_load
from ..losses import AnnealedMACBudget
from ..training_signal import TrainingSignalMixin, build_training_signal

#: Substring of the parameter names of every mask generator (for
#: ``paramwise_cfg.custom_keys``: the MSGC recipe gives them 5x lr, no decay).
MASK_GENERATOR_KEY = 'mask_generator'
ATTENTION_GENERATOR_KEY = 'attention_generator'
#: MSGC's budget: τ annealed from 1 to 0.5 over the first half of training,
#: λ = 30 (the backbones' ``budget`` argument overrides any of these keys).
DEFAULT_BUDGET = dict(target=0.5, loss_weight=30.0, anneal_begin=0.0,
                      anneal_end=0.5)


def unread_fraction(mask: Tensor) -> Tensor:
    """``[N, G, C]`` binary masks -> ``[N]`` fraction of the ``C`` channels
    that no group reads."""
    return (1 - mask).prod(1).mean(1)


def density(mask: Tensor) -> Tensor:
    """``[N, ...]`` mask -> ``[N]`` mean per sample."""
    return mask.flatten(1).mean(1)


class MSGCBlockMixin(CostReporter):
    """Generators of one block (all conditioned on the block's pooled
    input), masks, and its cost report."""

    def _check_heads(self, heads: int, out_channels: int, conv: str) -> None:
        check_divides(type(self).__name__, 'heads', heads, [out_channels],
                      f'the output channels of {conv}')

    def _make_generators(self, inplanes: int, masks: dict, attention: dict,
                         squeeze: int, gate_bias: float, tau: float,
                         generator_norm_cfg: Optional[dict]):
        """``masks``/``attention``: ``{index: (channels, heads)}`` -> modules
        ``mask_generator{index}`` / ``attention_generator{index}``."""
        for index, (channels, heads) in masks.items():
            self.add_module(
                f'{MASK_GENERATOR_KEY}{index}',
                MaskGenerator(inplanes, channels, heads, squeeze, gate_bias,
                              tau, generator_norm_cfg))
        for index, (channels, heads) in attention.items():
            self.add_module(
                f'{ATTENTION_GENERATOR_KEY}{index}',
                AttentionGenerator(inplanes, channels, heads, squeeze,
                                   generator_norm_cfg))

    def _generate(self, x: Tensor):
        """Binary masks and attention of every generator, and the MACs of
        the generators and their shared global average pool."""
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        masks, attention = {}, {}
        macs = x.shape[1] * x.shape[2] * x.shape[3]  # the shared GAP
        for name, module in self.named_children():
            if isinstance(module, MaskGenerator):
                masks[int(name[len(MASK_GENERATOR_KEY):])] = module(pooled)
                macs += module.macs
            elif isinstance(module, AttentionGenerator):
                attention[int(name[len(ATTENTION_GENERATOR_KEY):])] = module(
                    pooled)
                macs += module.macs
        return masks, attention, macs

    @staticmethod
    def _weighted(masks: dict, attention: dict, index: int) -> Tensor:
        mask = masks[index]
        return mask * attention[index] if index in attention else mask


class MSGCBackboneMixin(TrainingSignalMixin, DeployableBackboneMixin,
                        CostReporter):
    """Backbone-level MSGC behaviour.

    * Dense checkpoints: loading a torchvision / mmpretrain / mmdet state
      dict of the dense network keeps the generators' initialisation and
      says so in one log line instead of a list of missing keys.
    * ``switch_to_deploy``: BN folded into the convs (the generators' too),
      MSGC convs on the ops (:class:`~mmlgc.deploy.DeployableBackboneMixin`).
    * ``init_weights`` restores the generators' own initialisation after
      mmengine's default Kaiming/Constant init.
    """

    sparse_types = (MSGCConv2d, )

    @staticmethod
    def block_arguments(owner: str, backbone_kwargs: dict,
                        default_norm_cfg: dict, **arguments) -> dict:
        """The MSGC blocks' own arguments (``heads``, ``attention``,
        ``squeeze``, ``gate_bias``, ``tau``, ``generator_norm_cfg``), ``tau``
        checked and ``generator_norm_cfg='same'`` resolved to the backbone's
        ``norm_cfg`` (``default_norm_cfg``, the backbone class's default,
        when the config gives none)."""
        check_positive(owner, 'tau', arguments['tau'])
        if arguments['generator_norm_cfg'] == 'same':
            arguments['generator_norm_cfg'] = backbone_kwargs.get(
                'norm_cfg', default_norm_cfg)
        return arguments

    def _setup_msgc(self, budget: Optional[dict]) -> None:
        # Trains with the MAC budget whatever the config's hooks
        # (mmlgc.models.training_signal); MACBudgetHook takes it over.
        self.training_signal = build_training_signal(
            self, 'budget', 'MACBudgetHook', budget, AnnealedMACBudget,
            DEFAULT_BUDGET)
        keep_method_state_on_dense_load(self, _describe_generators)

    @torch.no_grad()
    def calibrate_untrained(self, x, target, seed):
        """Static masks opening a fraction ``d`` of every generator's
        channels (a random, seeded choice), ``d`` bisected until the MACs
        ratio measured on ``x`` is ``target``. Returns (d, ratio)."""
        generators = [
            m for m in self.modules() if isinstance(m, MaskGenerator)
        ]
        rng = torch.Generator().manual_seed(seed)
        orders = [torch.rand(m.heads * m.channels, generator=rng).argsort()
                  for m in generators]

        def apply(density):
            for module, order in zip(generators, orders):
                module.open_only(order[:round(density * order.numel())])
            self(x)
            return collect_costs(self).ratio.item()

        low, high = 0.0, 1.0
        for _ in range(20):
            mid = (low + high) / 2
            if apply(mid) > target:
                high = mid
            else:
                low = mid
        return low, apply(low)

    def init_weights(self):
        loads_checkpoint = _loads_checkpoint(self.init_cfg)
        if loads_checkpoint:
            # mm*'s Pretrained init loads without initialising anything
            # first; a dense checkpoint has no generators, and the load
            # pre-hook keeps what they hold. Give them what the reference
            # gives them (every conv Kaiming-initialised, then the dense
            # weights loaded); an MSGC checkpoint overwrites it.
            for module in self.modules():
                if isinstance(module, (MaskGenerator, AttentionGenerator)):
                    module.kaiming_init_convs()
            self._init_generator_outputs()
        super().init_weights()
        if not loads_checkpoint:
            # mm*'s Kaiming/Constant init overwrote the generators' outputs.
            self._init_generator_outputs()

    def _init_generator_outputs(self):
        """The gate bias of the mask logits; attention starting at 1."""
        for module in self.modules():
            if isinstance(module, (MaskGenerator, AttentionGenerator)):
                module.init_output()


def _loads_checkpoint(init_cfg) -> bool:
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    return any(
        isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'
        for cfg in cfgs)


def _describe_generators(absent) -> str:
    generators = {k.rsplit('.layers.', 1)[0] for k in absent}
    return (f'weights for {len(generators)} mask/attention generators '
            f'({len(absent)} tensors)')
