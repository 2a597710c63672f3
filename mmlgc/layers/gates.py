"""Gates: turn generator logits into (straight-through) binary masks."""
import torch
from torch import Tensor, nn

from ..utils.checks import check_positive


class BinaryConcreteGate(nn.Module):
    """MSGC's binary-concrete gate with a straight-through estimator.

    Training: ``soft = sigmoid((logit + g) / tau)`` with logistic noise
    ``g = log(u) - log(1 - u)``, ``u ~ U(0, 1)``; the forward value is
    ``hard = [soft >= 0.5]`` and the gradient is ``soft``'s. A channel is
    therefore open with probability ``sigmoid(logit)`` whatever ``tau``.
    Eval: ``logit >= 0``, deterministic.

    Args:
        tau: temperature of the relaxation (2/3 in MSGC).
    """

    def __init__(self, tau: float = 2 / 3):
        super().__init__()
        check_positive(type(self).__name__, 'tau', tau)
        self.tau = tau

    def forward(self, logits: Tensor) -> Tensor:
        if not self.training:
            return (logits >= 0).to(logits.dtype)
        u = torch.rand_like(logits)
        # logit(u) = log(u) - log(1 - u); the clamp keeps it finite at u = 0.
        noise = torch.logit(u, eps=1e-6)
        soft = torch.sigmoid((logits + noise) / self.tau)
        hard = (soft >= 0.5).to(logits.dtype)
        return hard - soft.detach() + soft

    def extra_repr(self) -> str:
        return f'tau={self.tau:.4g}'


class TopKSaliencyGate(nn.Module):
    """DGC's gate (``docs/dgc.md``): per sample and head, zero the ``k``
    channels of lowest saliency and scale the kept ones by their saliency.

    Input and output are ``[N, G, C]`` saliencies; the output is the real
    valued mask ``s ⊙ keep``. The selection carries no gradient, the kept
    saliencies carry theirs (as in the reference, which zeroes a clone of the
    saliency at the selected indices).

    Ties at the threshold (``tie_break``):

    * ``'index'`` (default): exactly ``k`` channels are dropped per sample
      and head; among equal saliencies the lower channel index is dropped
      first (a stable ascending sort). Deterministic, independent of the
      batch, and every head reads at most ``C - k`` channels, which is what
      the MAC accounting and a fixed-width deploy assume.
    * ``'reference'``: the reference's rule, drop every channel whose
      saliency is ``<=`` the ``k``-th smallest, which drops more than ``k``
      channels when values tie at the threshold.

    Both agree whenever the ``k``-th and ``(k+1)``-th smallest saliencies
    differ. The usual tie is several saliencies at exactly 0 (the
    generator's final ReLU); those channels are zero in either rule, so the
    two outputs differ only for ties at a positive value.

    :meth:`threshold` is DGC-G's gate: keep a channel iff its saliency is
    above a (network-wide) threshold.
    """

    TIE_BREAKS = ('index', 'reference')

    def __init__(self, tie_break: str = 'index'):
        super().__init__()
        if tie_break not in self.TIE_BREAKS:
            raise ValueError(f'{type(self).__name__}: tie_break='
                             f'{tie_break!r} must be one of {self.TIE_BREAKS}')
        self.tie_break = tie_break

    def drop_mask(self, saliency: Tensor, k: int) -> Tensor:
        """Boolean ``[N, G, C]``: the channels the top-k rule drops."""
        s = saliency.detach()
        if k <= 0:
            return torch.zeros_like(s, dtype=torch.bool)
        if k >= s.shape[-1]:
            return torch.ones_like(s, dtype=torch.bool)
        if self.tie_break == 'reference':
            kth = s.topk(k, dim=-1, largest=False).values.amax(-1, True)
            return s <= kth
        # What a stable ascending sort's first k are, without the sort
        # (7x faster for 2048 channels at batch 1 here): everything below
        # the k-th smallest value, then the ties at it by channel index.
        kth = s.kthvalue(k, dim=-1, keepdim=True).values
        below = s < kth
        ties = s == kth
        wanted = k - below.sum(-1, keepdim=True)
        return below | (ties & (ties.cumsum(-1) <= wanted))

    def forward(self, saliency: Tensor, k: int) -> Tensor:
        if k <= 0:
            return saliency
        return saliency.masked_fill(self.drop_mask(saliency, k), 0)

    @staticmethod
    def threshold(saliency: Tensor, threshold: float) -> Tensor:
        """DGC-G: keep channels whose saliency is ``> threshold``."""
        return saliency.masked_fill(saliency.detach() <= threshold, 0)

    def extra_repr(self) -> str:
        return f'tie_break={self.tie_break!r}'
