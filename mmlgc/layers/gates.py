"""Gates: turn generator logits into (straight-through) binary masks."""
import torch
from torch import Tensor, nn


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
        if tau <= 0:
            raise ValueError(f'tau must be positive, got {tau}')
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
