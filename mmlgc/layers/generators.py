"""Per-sample generators conditioned on a block's pooled input."""
from typing import Optional

from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

from .gates import BinaryConcreteGate


class _PooledMLP(nn.Module):
    """``[N, C]`` -> 1x1 conv C -> C/r (no bias) -> norm -> ReLU -> 1x1 conv
    C/r -> G·K -> ``[N, G, K]``. 1x1 convs (not Linear) so the parameters have
    the reference's shapes and a BN can be fused into them for deploy."""

    def __init__(self, in_channels: int, channels: int, heads: int,
                 squeeze: int, norm_cfg: Optional[dict]):
        super().__init__()
        hidden = in_channels // squeeze
        if hidden < 1:
            raise ValueError(f'squeeze {squeeze} leaves no hidden channel for '
                             f'{in_channels} input channels')
        self.in_channels, self.channels, self.heads = in_channels, channels, heads
        self.hidden = hidden
        norm = (build_norm_layer(norm_cfg, hidden)[1]
                if norm_cfg is not None else nn.Identity())
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False), norm,
            nn.ReLU(inplace=True), nn.Conv2d(hidden, heads * channels, 1))

    def forward(self, pooled: Tensor) -> Tensor:
        out = self.layers(pooled.view(pooled.shape[0], -1, 1, 1))
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
        nn.init.constant_(self.layers[-1].bias, bias_init)
        self.gate = BinaryConcreteGate(tau)

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
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.ones_(self.layers[-1].bias)
