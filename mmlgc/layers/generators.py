"""Per-sample generators conditioned on a block's pooled input."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import kaiming_init
from torch import Tensor, nn

from ..utils.checks import check_positive_int
from .gates import BinaryConcreteGate


def hidden_width(owner: str, in_channels: int, squeeze: int) -> int:
    """Hidden width ``C // r`` of ``owner``, a generator; at least one
    channel."""
    check_positive_int(owner, 'squeeze', squeeze)
    hidden = in_channels // squeeze
    if hidden < 1:
        raise ValueError(f'{owner}: squeeze={squeeze} leaves no hidden '
                         f'channel for {in_channels} input channels: it must '
                         f'be at most {in_channels}')
    return hidden


class _PooledMLP(nn.Module):
    """``[N, C]`` -> 1x1 conv C -> C/r (no bias) -> norm -> ReLU -> 1x1 conv
    C/r -> G·K -> ``[N, G, K]``. 1x1 convs (not Linear) so the parameters have
    the reference's shapes and a BN can be fused into them for deploy; they
    run as ``F.linear`` (on 1x1 maps ATen's CPU conv takes its slow
    reference path, ~6 ms per ResNet-50 forward)."""

    # All of it: a dense checkpoint has no generator, which keeps its
    # initialisation (mmlgc.models.dense_checkpoints).
    method_state = ('layers', )

    def __init__(self, in_channels: int, channels: int, heads: int,
                 squeeze: int, norm_cfg: Optional[dict]):
        super().__init__()
        hidden = hidden_width(type(self).__name__, in_channels, squeeze)
        self.in_channels, self.channels = in_channels, channels
        self.heads = heads
        self.hidden = hidden
        norm = (build_norm_layer(norm_cfg, hidden)[1]
                if norm_cfg is not None else nn.Identity())
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False), norm,
            nn.ReLU(inplace=True), nn.Conv2d(hidden, heads * channels, 1))

    def kaiming_init_convs(self) -> None:
        """Both convs Kaiming-normal (fan_out), the MSGC reference's init;
        the output's own initialisation (``init_output``) goes after."""
        for conv in self.layers:
            if isinstance(conv, nn.Conv2d):
                kaiming_init(conv, mode='fan_out', nonlinearity='relu',
                             distribution='normal')

    def forward(self, pooled: Tensor) -> Tensor:
        expand, norm, act, project = self.layers
        hidden = F.linear(pooled.flatten(1), expand.weight.flatten(1),
                          expand.bias)
        if isinstance(norm, nn.Identity):  # none, or folded at deploy
            hidden = F.relu(hidden, inplace=True)  # act, without its call
        else:
            hidden = act(norm(hidden[:, :, None, None])).flatten(1)
        out = F.linear(hidden, project.weight.flatten(1), project.bias)
        return out.view(pooled.shape[0], self.heads, self.channels)

    @property
    def macs(self) -> int:
        """Per-sample MACs, MSGC's convention ``(C+1)·C/r + C/r·G·K`` (the
        ``+1`` is the BN/ReLU op per hidden unit)."""
        return ((self.in_channels + 1) * self.hidden +
                self.hidden * self.heads * self.channels)


class MaskGenerator(_PooledMLP):
    """MSGC mask generator: pooled block input -> ``[N, heads, channels]``
    binary masks through :class:`BinaryConcreteGate`.

    Args:
        in_channels: channels of the pooled block input.
        channels: channels the masks select (inputs of the masked conv).
        heads: groups of the masked conv (1 for a plain channel mask).
        squeeze: hidden width is ``in_channels // squeeze`` (4 BasicBlock and
            MobileNetV2, 8 Bottleneck).
        bias_init: initial bias of the last conv; 2.0 opens ~88% channels.
        tau: gate temperature.
        norm_cfg: norm of the hidden layer (mmcv config; None for none).
    """

    def __init__(self,
                 in_channels: int,
                 channels: int,
                 heads: int = 1,
                 squeeze: int = 4,
                 bias_init: float = 2.0,
                 tau: float = 2 / 3,
                 norm_cfg: Optional[dict] = dict(type='BN')):
        super().__init__(in_channels, channels, heads, squeeze, norm_cfg)
        self.bias_init = bias_init
        self.init_output()
        self.gate = BinaryConcreteGate(tau)

    def init_output(self) -> None:
        """The mask logits' initial bias, ``bias_init`` (which a
        layer-wide init such as mm*'s Kaiming or an FPN's Xavier
        overwrites)."""
        nn.init.constant_(self.layers[-1].bias, self.bias_init)

    @torch.no_grad()
    def open_only(self, index: Tensor) -> None:
        """Static masks without training: the logits' weights zeroed, bias
        +10 (open) at the flat ``[heads · channels]`` positions ``index``,
        -10 elsewhere."""
        last = self.layers[-1]
        last.weight.zero_()
        last.bias.fill_(-10.0)
        last.bias[index] = 10.0

    def logits(self, pooled: Tensor) -> Tensor:
        return super().forward(pooled)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.gate(self.logits(pooled))


class AttentionGenerator(_PooledMLP):
    """MSGC attention generator: same body, no gate, unbounded output; the
    last conv starts at weight 0 / bias 1 so attention starts at exactly 1."""

    def __init__(self,
                 in_channels: int,
                 channels: int,
                 heads: int = 1,
                 squeeze: int = 4,
                 norm_cfg: Optional[dict] = dict(type='BN')):
        super().__init__(in_channels, channels, heads, squeeze, norm_cfg)
        self.init_output()

    def init_output(self) -> None:
        """Attention starting at exactly 1 (weight 0, bias 1), which a
        layer-wide init overwrites."""
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.ones_(self.layers[-1].bias)


class SaliencyGenerator(nn.Module):
    """DGC's saliency generators, one per head, run as one batched module:
    head ``g`` maps the pooled input ``[N, C]`` through
    ``ReLU(FC2_g(ReLU(FC1_g(p))))`` (FC1 ``C -> C/r`` without bias, FC2
    ``C/r -> C`` with bias 1) to ``[N, G, C]`` non-negative saliencies.

    Unlike MSGC's generators the heads share nothing (no common hidden
    layer) and there is no norm, as in the reference; the FC weights are
    plain ``[G, out, in]`` parameters (the reference's ``nn.Linear`` shapes
    stacked over heads), which mm*'s Kaiming/Constant default init for convs
    and norms leaves alone, so the reference initialisation (Kaiming normal,
    FC2 bias 1) survives ``init_weights``.

    Args:
        in_channels: channels ``C`` of the pooled input (and of the
            saliency).
        heads: ``G``.
        squeeze: hidden width ``C // squeeze`` (the caller applies DGC's
            "16, or 8 when C < 80").
        bias_init: initial FC2 bias (1 in DGC: every channel starts salient).
        uniform_start: FC2's weight starts at 0, so every saliency starts
            at exactly ``bias_init`` whatever the input (the reference:
            Kaiming normal, saliencies ``1 ±`` O(1) per sample and channel).
    """

    def __init__(self, in_channels: int, heads: int = 4, squeeze: int = 16,
                 bias_init: float = 1.0, uniform_start: bool = False):
        super().__init__()
        hidden = hidden_width(type(self).__name__, in_channels, squeeze)
        self.in_channels, self.heads, self.hidden = in_channels, heads, hidden
        self.bias_init, self.uniform_start = bias_init, uniform_start
        self.fc1_weight = nn.Parameter(torch.empty(heads, hidden, in_channels))
        self.fc2_weight = nn.Parameter(torch.empty(heads, in_channels, hidden))
        self.fc2_bias = nn.Parameter(torch.empty(heads, in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Per head as nn.init.kaiming_normal_ on an [out, in] Linear weight.
        for weight in (self.fc1_weight, self.fc2_weight):
            for head in weight:
                nn.init.kaiming_normal_(head)
        if self.uniform_start:
            # FC1 still gets its gradient once FC2 has moved off 0.
            nn.init.zeros_(self.fc2_weight)
        nn.init.constant_(self.fc2_bias, self.bias_init)

    def forward(self, pooled: Tensor) -> Tensor:
        # Batched over heads as [G, ., N] matrix products (half the time of
        # the equivalent einsums, whose parsing dominates at these sizes).
        hidden = torch.relu(torch.matmul(self.fc1_weight, pooled.t()))
        out = torch.baddbmm(self.fc2_bias[:, :, None], self.fc2_weight, hidden)
        return torch.relu(out).permute(2, 0, 1)  # [N, G, C]

    @property
    def macs(self) -> int:
        """Per-sample MACs in the DGC reference counter's convention, per
        head: FC1 ``C·h``, its ReLU ``h``, FC2 ``h·C + C`` (bias), its ReLU
        ``C``, and one op per saliency element ``C``."""
        c, h = self.in_channels, self.hidden
        return self.heads * (2 * c * h + h + 3 * c)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, heads={self.heads}, '
                f'hidden={self.hidden}')
