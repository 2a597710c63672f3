"""SG-CNN's self-grouping (Guo et al., Neural Networks 2020;
``docs/sgcnn.md``): turn each conv (and FC) of a trained network into a
"diverse" group conv whose filters cluster by what they read.

Per layer, one grouping step to a pruned fraction ``r``:

1. importance vector of filter ``i``: ``v_i[j] = Σ_{u,v} |W[i,j,u,v]·M[i,j]|``
   (L1 of its kernel slice to input channel ``j``; pruned entries count 0;
   for an FC layer ``|W[i,j]·M[i,j]|``), no normalisation (the reference's
   normalisation is commented out);
2. k-means (Euclidean) of the ``O`` vectors into ``G`` clusters (16) —
   :func:`kmeans`, the reference's ``sklearn`` setting (random init from the
   data, 10 restarts, at most 300 iterations) in torch, deterministic given
   a seed;
3. every filter's row is replaced by its cluster's centroid times the
   cluster's mask, and a per-layer percentile threshold on these ``O·C``
   values (``np.percentile``'s linear interpolation, as the reference)
   removes the fraction ``r`` of connections: ``M[i,j] = value > threshold``.
   All filters of a cluster thus share one input-channel set.

Faithfulness: where filters of one cluster had different masks (they came
from different clusters of the previous step), the reference multiplies the
centroid by the *first member's* mask to binarise it and then by each
member's own mask, so members may end with different sets and the layer
loses a little more than ``r`` (one reason its ResNet-50 Conv-60 reads
1.91 G rather than the 1.92 G an exact 60 % gives). Here the cluster's mask
is the intersection of its members' masks and it enters the percentile, so
a cluster shares one set exactly, pruned connections stay pruned, and the
fraction removed is ``r`` up to ties (a tie block is one cluster's entries
for one channel: at most a cluster size over ``O·C``).

The progressive schedule (10 %, 20 %, ... re-clustering each time with the
pruned entries at 0) and the fine-tuning schemes are
:class:`mmlgc.engine.SelfGroupingHook`'s.
"""
import math
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .static_groups import ConnectionMaskedConv2d

#: Per-layer state (persistent buffers) only SG-CNN has; absent from a dense
#: checkpoint.
GROUPING_STATE = ('mask', 'grouped_ratio')


def importance_vectors(weight: Tensor, mask: Tensor) -> Tensor:
    """``[O, C]`` importance of each filter's input channels: the L1 norm
    of its (masked) kernel slice; ``weight`` ``[O, C, kh, kw]`` or ``[O, C]``
    (FC), ``mask`` ``[O, C]``."""
    w = weight.detach().abs()
    if w.dim() == 4:
        w = w.sum((2, 3))
    elif w.dim() != 2:
        raise ValueError(f'importance_vectors: weight of shape '
                         f'{tuple(weight.shape)}: expected a conv '
                         '[O, C, kh, kw] or linear [O, C] weight')
    return w * mask.to(w.dtype)


def kmeans(points: Tensor,
           clusters: int,
           seed: int = 0,
           n_init: int = 10,
           max_iter: int = 300,
           tol: float = 1e-4) -> Tuple[Tensor, Tensor]:
    """Lloyd's k-means (Euclidean) of ``points`` ``[N, D]``: ``(centroids
    [K, D], labels [N])`` of the best of ``n_init`` runs (lowest inertia).

    As ``sklearn.cluster.KMeans(init='random')`` in the reference: each run
    starts from ``K`` distinct data points drawn at random, stops when the
    centroids move less than ``tol`` times the data's mean variance, and an
    emptied cluster restarts at the point farthest from its centroid.
    ``K = min(clusters, distinct points)``. Computed on the CPU with a
    ``torch.Generator`` seeded by ``seed``: the same input and seed give the
    same clusters. Every centroid is the mean of its members.
    """
    if clusters < 1:
        raise ValueError(f'kmeans: clusters={clusters!r} must be positive')
    x = points.detach().to('cpu', torch.float64)
    distinct = torch.unique(x, dim=0)
    k = min(clusters, len(distinct))
    gen = torch.Generator().manual_seed(seed)
    tol_abs = tol * float(x.var(0, unbiased=False).mean()) if len(x) > 1 \
        else 0.0
    # Distances in single precision (one GEMM per iteration, the cost),
    # means and inertia in double.
    x32 = x.float()
    norms = (x32**2).sum(1, keepdim=True)
    best = None
    for _ in range(n_init):
        centroids = distinct[torch.randperm(len(distinct),
                                            generator=gen)[:k]].clone()
        for _ in range(max_iter):
            labels = _nearest(x32, norms, centroids)
            new = _means(x, labels, k, centroids)
            shift = float(((new - centroids)**2).sum())
            centroids = new
            if shift <= tol_abs:
                break
        labels = _nearest(x32, norms, centroids)
        centroids = _means(x, labels, k, centroids)
        inertia = float(((x - centroids[labels])**2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, centroids, labels)
    _, centroids, labels = best
    return centroids.to(points.dtype), labels


def _nearest(x: Tensor, norms: Tensor, centroids: Tensor) -> Tensor:
    """Index of each point's nearest centroid: squared distances as
    ``|x|² - 2 x·c + |c|²`` (one GEMM; ``torch.cdist`` is several times
    slower here)."""
    centroids = centroids.to(x.dtype)
    dist = norms - 2 * x @ centroids.T + (centroids**2).sum(1)
    return dist.argmin(1)


def _means(x: Tensor, labels: Tensor, k: int, previous: Tensor) -> Tensor:
    """Cluster means; an empty cluster moves to the point farthest from its
    current centroid (sklearn's relocation)."""
    counts = torch.bincount(labels, minlength=k)
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype).index_add_(0, labels, x)
    means = sums / counts.clamp(min=1)[:, None]
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty):
        far = ((x - previous[labels])**2).sum(1).argsort(descending=True)
        means[empty] = x[far[:len(empty)]]
    return means


def percentile(values: Tensor, fraction: float) -> float:
    """``np.percentile(values, 100 · fraction)`` (linear interpolation)."""
    v = values.detach().flatten().to(torch.float64).sort().values
    pos = fraction * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def self_group(importance: Tensor,
               mask: Tensor,
               groups: int,
               ratio: float,
               seed: int = 0) -> Tuple[Tensor, Tensor]:
    """One self-grouping step of one layer: ``(new mask [O, C] float 0/1,
    cluster of each filter [O])`` removing the fraction ``ratio`` of the
    layer's ``O·C`` connections (already pruned ones included)."""
    if not 0 < ratio < 1:
        raise ValueError(f'self_group: ratio={ratio!r} must be in (0, 1)')
    if importance.shape != mask.shape:
        raise ValueError(f'self_group: importance {tuple(importance.shape)} '
                         f'and mask {tuple(mask.shape)} differ')
    centroids, labels = kmeans(importance, groups, seed)
    connected = (mask.detach().cpu() != 0).to(centroids.dtype)
    # The cluster reads a channel only if every member still does.
    cluster_mask = torch.ones_like(centroids).scatter_reduce_(
        0, labels[:, None].expand_as(connected), connected, 'amin')
    values = (centroids * cluster_mask)[labels]
    threshold = percentile(values, ratio)
    new = (values > threshold).to(mask.dtype).to(mask.device)
    return new, labels


class SelfGroupedMixin:
    """The mask ``[O, C]`` and ``grouped_ratio`` buffers (persistent: a
    checkpoint carries the grouping) and :meth:`regroup`."""

    # Model averaging (EMA) copies these (mmlgc.utils.model_averaging); a
    # dense checkpoint has none of them, they stay dense
    # (mmlgc.models.dense_checkpoints).
    discrete_state = method_state = GROUPING_STATE

    def _init_grouping(self, out_features: int, in_features: int):
        # All ones: a fresh layer is the dense layer.
        self.register_buffer('mask', torch.ones(out_features, in_features))
        # The pruned fraction the layer was last grouped to (0: dense).
        self.register_buffer('grouped_ratio', torch.zeros(()))

    def connection_mask(self) -> Tensor:
        return self.mask

    def importance(self) -> Tensor:
        return importance_vectors(self.weight, self.mask)

    @torch.no_grad()
    def regroup(self, ratio: float, groups: int = 16, seed: int = 0) -> int:
        """Self-group to the pruned fraction ``ratio``; returns the number
        of clusters."""
        new, labels = self_group(self.importance(), self.mask, groups, ratio,
                                 seed)
        self.mask.copy_(new)
        self.grouped_ratio.fill_(ratio)
        return int(labels.max()) + 1

    @property
    def pruned_fraction(self) -> float:
        return 1.0 - float(self.mask.mean())


class SelfGroupedConv2d(SelfGroupedMixin, ConnectionMaskedConv2d, nn.Conv2d):
    """A conv whose connectivity is SG-CNN's: the dense ``weight`` (dense
    name and shape, so dense checkpoints load) times the ``mask`` buffer
    ``[O, C]``, all ones (dense) until :meth:`regroup` groups it. Deploys to
    a :class:`~mmlgc.layers.RaggedGroupConv2d` (one group per distinct input
    set, i.e. per cluster).

    ``nn.Conv2d`` is repeated among the direct bases (the MRO is unchanged)
    because mmengine's initialisers match a module by its class and direct
    bases' names only (see :class:`~mmlgc.layers.flgc.FLGCConv2d`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.groups != 1:
            raise ValueError('SelfGroupedConv2d groups its filters itself: '
                             f'build it with groups=1, got {self.groups}')
        self._init_grouping(self.out_channels, self.in_channels)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> 'SelfGroupedConv2d':
        """The same conv (weights shared) as a self-grouped one."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size,
                  conv.stride, conv.padding, conv.dilation, conv.groups,
                  conv.bias is not None, conv.padding_mode)
        new.weight = conv.weight
        if conv.bias is not None:
            new.bias = conv.bias
        return new.to(conv.weight.device)


class SelfGroupedLinear(SelfGroupedMixin, nn.Linear):
    """SG-CNN's grouped FC layer: ``weight · mask`` (``[O, C]`` buffer, all
    ones at start). Its cost in the MSGC convention is the classifier head's
    (``tools/analysis/get_flops.py``); :func:`reference_complexity` counts its
    active connections."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_grouping(self.out_features, self.in_features)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> 'SelfGroupedLinear':
        new = cls(linear.in_features, linear.out_features,
                  linear.bias is not None)
        new.weight = linear.weight
        if linear.bias is not None:
            new.bias = linear.bias
        return new.to(linear.weight.device)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight * self.mask.to(self.weight.dtype),
                        self.bias)


def self_grouped_layers(
        model: nn.Module) -> Iterator[Tuple[str, SelfGroupedMixin]]:
    """``(name, layer)`` of every self-grouped conv and FC, in module
    order."""
    for name, module in model.named_modules():
        if isinstance(module, SelfGroupedMixin):
            yield name, module


def group_model(model: nn.Module,
                conv_ratio: Optional[float],
                fc_ratio: Optional[float] = None,
                groups: int = 16,
                seed: int = 0) -> Dict[str, float]:
    """One self-grouping step of every self-grouped layer of ``model``:
    convs to ``conv_ratio``, FC layers to ``fc_ratio`` (None or 0: left
    as they are). Layer ``n`` (module order) clusters with seed
    ``seed + n``. Returns the pruned fraction of each grouped layer."""
    pruned = {}
    for index, (name, layer) in enumerate(self_grouped_layers(model)):
        ratio = fc_ratio if isinstance(layer, nn.Linear) else conv_ratio
        if not ratio:
            continue
        layer.regroup(ratio, groups, seed + index)
        pruned[name] = layer.pruned_fraction
    if not pruned:
        raise ValueError(
            f'{type(model).__name__} has no self-grouped layer to group for '
            f'conv_ratio={conv_ratio}, fc_ratio={fc_ratio} (is its backbone '
            "type='mmlgc.SGCNNResNet'?)")
    return pruned


def pruned_fractions(model: nn.Module) -> Dict[str, float]:
    """Fraction of the weights pruned over all self-grouped convs and over
    all self-grouped FC layers (``{'conv': ., 'fc': .}``, keys present when
    the model has such layers)."""
    totals: Dict[str, List[float]] = {}
    for _, layer in self_grouped_layers(model):
        kind = 'fc' if isinstance(layer, nn.Linear) else 'conv'
        weights = layer.weight[0].numel() // layer.mask.shape[1]
        entry = totals.setdefault(kind, [0.0, 0.0])
        entry[0] += float(layer.mask.sum()) * weights
        entry[1] += layer.mask.numel() * weights
    return {kind: 1 - kept / total for kind, (kept, total) in totals.items()}


@torch.no_grad()
def reference_complexity(model: nn.Module, *inputs, **kwargs) -> dict:
    """MACs and parameters of one forward of ``model(*inputs, **kwargs)`` in
    the SG-CNN reference counter's convention (its ``torchsummary.py``),
    which gives the paper's ResNet-50 numbers (4.09 G MACs / 25.55 M params
    dense at 224², batch 1):

    * a self-grouped conv: ``k²·H'W'`` per active connection, plus one op
      per filter that reads anything (its BN, counted once, not per pixel);
      parameters: ``k²`` per active connection plus the 2 BN parameters of
      each such filter (and its bias);
    * any other conv (stem, downsample): dense ``k²·C/groups·O·H'W'`` (+
      bias), parameters its weights (+ bias); their BNs are not counted;
    * an FC layer: one MAC and one parameter per active weight, plus the
      biases of the outputs that read anything;
    * BN, ReLU, pooling and the residual add: nothing.
    """
    macs, params, handles = [0], [0], []

    def conv_hook(module, args, out):
        spatial = out.shape[2] * out.shape[3]
        k = module.weight[0, 0].numel()
        if isinstance(module, SelfGroupedConv2d):
            alive = int((module.mask.sum(1) > 0).sum())
            active = float(module.mask.sum())
            extra = alive * (module.bias is not None)
            macs[0] += active * k * spatial + alive + extra
            params[0] += active * k + 2 * alive + extra
        else:
            bias = 0 if module.bias is None else module.bias.numel()
            macs[0] += module.weight.numel() * spatial + bias
            params[0] += module.weight.numel() + bias

    def linear_hook(module, args, out):
        if isinstance(module, SelfGroupedLinear):
            active = float(module.mask.sum())
            bias = int((module.mask.sum(1) > 0).sum()) \
                if module.bias is not None else 0
        else:
            active = module.weight.numel()
            bias = 0 if module.bias is None else module.bias.numel()
        rows = out.numel() // out.shape[-1] // max(out.shape[0], 1)
        macs[0] += (active + bias) * rows
        params[0] += active + bias

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    try:
        model(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return dict(macs=macs[0], params=params[0])
