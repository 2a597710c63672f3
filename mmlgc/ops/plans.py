"""Execution plans: per layer, the fastest *exact* implementation on this
CPU, chosen by measured latency and cached on disk.

No single implementation of a grouped conv wins every shape (the ragged
kernel loses to oneDNN on wide groups, a dense conv with the sparsity folded
into zero weights loses nothing against dense). So a deployed layer does not
commit to one: at its first call with a given signature (op, geometry,
batch, spatial-size bucket, density bucket, dtype, threads) every candidate
valid for it runs a few interleaved rounds (:mod:`mmlgc.ops.timing`) on the
actual input, the fastest median wins, and the choice is stored

* in memory (later calls: one dictionary look-up), and
* in a JSON file keyed by the CPU model and the kernels' revision
  (``$MMLGC_PLAN_CACHE``, default ``~/.cache/mmlgc/plans.json``), so
  ``tools/deploy.py``, ``tools/test.py`` and ``benchmark_model.py`` reuse
  what an earlier run measured, and a plan measured against an older kernel
  is measured again.

Every candidate computes the op's definition (:mod:`mmlgc.ops.reference`);
they differ only in float rounding (zero weights add exact zeros).

``$MMLGC_CONV_PLAN`` (or :func:`force_plan`) forces a candidate where it is
valid: ``kernel`` (the compiled op), ``dense`` (zero-weight dense conv;
static groups, or dynamic with one group), ``grouped`` (static groups
merged into a few equal, channel-permuted groups: one oneDNN grouped conv),
``gathered`` (dynamic: per sample, each group's active channels gathered
into one ``groups=G`` conv), ``batch_union`` (dynamic, batch > 1: the union
of the batch's active channels per group, masked, one grouped conv);
``gemm`` (dynamic 1x1: active channels of every sample gathered into one
batched GEMM); for max pools (:class:`PlannedMaxPool2d`) ``native``,
``channels_last``, ``separable``; ``measure`` (default) chooses by latency.

Candidates (static ragged groups, :class:`~mmlgc.layers.static_groups.
RaggedGroupConv2d`):

* ``kernel``: :func:`mmlgc.ops.ragged_group_conv` (+ its output reorder);
* ``dense``: one dense conv whose weight holds the groups' blocks and zeros
  elsewhere, rows already in the output order the layer emits;
* ``grouped<B>``: the groups packed into ``B`` buckets of about equal output
  counts, each reading the union of its members' inputs (zero weights where
  a member does not read), padded to equal sizes: one input gather, one
  ``groups=B`` conv, one output gather.

Candidates (dynamic masks, :func:`mmlgc.ops.dynamic_group_conv`):
``kernel``; ``gathered``; ``batch_union`` (batch > 1); ``gemm`` (1x1);
``dense`` (one group: ``F.conv2d`` of the masked input).
"""
import json
import math
import os
import os.path as osp
import platform
import tempfile
import threading
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from ..complexity import conv_output_size
from .dynamic_group_conv import dynamic_group_conv as _dynamic_kernel
from .ragged_group_conv import ragged_group_conv as _ragged_kernel
from .ragged_group_conv import unpack_weights
from .reference import as_group_major
from .timing import time_interleaved

PLAN_ENV = 'MMLGC_CONV_PLAN'
CACHE_ENV = 'MMLGC_PLAN_CACHE'
#: Interleaved rounds per candidate when a plan is measured.
MEASURE_ROUNDS = 5
#: How much faster than the default (the compiled op) another candidate
#: must measure to be chosen.
SWITCH_MARGIN = 0.1
#: Bucket counts tried for static groups.
BUCKETS = (1, 2, 4, 8)
#: Raised whenever a kernel's speed changes (e.g. 2: unstrided 1x1 convs on
#: the direct kernel), so that cached plans that chose against the old one
#: are measured again.
KERNELS_REVISION = 2

_forced: Optional[str] = None
#: Signature -> candidate, for every plan this process ran.
chosen: Dict[str, str] = {}
_lock = threading.Lock()


def force_plan(name: Optional[str]) -> Optional[str]:
    """Force candidate ``name`` wherever it is valid (None: back to
    ``$MMLGC_CONV_PLAN``, or measuring). Returns the previous setting."""
    global _forced
    previous, _forced = _forced, name
    return previous


def forced_plan() -> str:
    return _forced or os.environ.get(PLAN_ENV, 'measure')


# -- the on-disk cache ------------------------------------------------------
def cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_section() -> str:
    """The cache file's section this process reads and writes."""
    return f'{cpu_model()}|kernels r{KERNELS_REVISION}'


class PlanCache:
    """Chosen candidate per signature, in memory and in a JSON file
    ``{section: {signature: {"choice": name, "ms": {name: median}}}}``
    (:func:`cache_section`; written atomically; a corrupt or foreign file is
    ignored)."""

    def __init__(self):
        self.path = None
        self.entries: Dict[str, dict] = {}

    def _sync_path(self):
        path = os.environ.get(CACHE_ENV) or osp.join(
            os.environ.get('XDG_CACHE_HOME', osp.expanduser('~/.cache')),
            'mmlgc', 'plans.json')
        if path != self.path:
            self.path, self.entries = path, self._read(path).get(
                cache_section(), {})

    @staticmethod
    def _read(path) -> dict:
        try:
            with open(path) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, signature: str, candidates=()) -> Optional[dict]:
        """The stored times (ms per candidate), if measured among exactly
        ``candidates`` (a plan measured before a candidate existed is
        measured again)."""
        self._sync_path()
        entry = self.entries.get(signature)
        if not isinstance(entry, dict) or not isinstance(entry.get('ms'),
                                                         dict):
            return None
        if set(entry['ms']) != set(candidates):
            return None
        return entry['ms']

    def put(self, signature: str, choice: str, ms: Dict[str, float]):
        self._sync_path()
        self.entries[signature] = dict(choice=choice, ms=ms)
        data = self._read(self.path)
        data.setdefault(cache_section(), {})[signature] = self.entries[
            signature]
        try:
            os.makedirs(osp.dirname(self.path) or '.', exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=osp.dirname(self.path) or '.',
                                       suffix='.tmp')
            with os.fdopen(fd, 'w') as f:
                json.dump(data, f, indent=0, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:  # read-only home: the in-memory plan still holds
            pass


cache = PlanCache()


def plannable(input: Tensor) -> bool:
    """Plans time candidates on the actual input: a CPU tensor, outside a
    trace (mmengine's analyzer, ``torch.jit.trace``, where sizes and
    densities are traced values and a timed choice would be recorded as the
    graph)."""
    return input.device.type == 'cpu' and not torch.jit.is_tracing()


def size_bucket(height: int, width: int) -> int:
    """Half-octaves of the pixel count: detection images of nearby sizes
    share a plan."""
    return round(2 * math.log2(max(height * width, 1)))


def density_bucket(density: float) -> int:
    """Eighths."""
    return round(8 * density)


def choose(signature: str, candidates: Dict[str, Callable[[], Tensor]],
           default: str = 'kernel', forced_default: bool = True) -> str:
    """The candidate to run: the forced one if valid (else ``default``, or,
    with ``forced_default=False``, as if nothing were forced), else the
    cached choice, else the fastest measured now (and cached). Another
    candidate displaces ``default`` only when measured at least
    :data:`SWITCH_MARGIN` faster: a closer call is within this machine's
    noise, and the compiled op is the known quantity."""
    forced = forced_plan()
    if forced != 'measure':
        for name in candidates:  # 'grouped' forces any grouped<B>
            if name == forced or name.rstrip('0123456789') == forced:
                return name
        if forced_default:
            return default
    # Layers of one geometry may offer different candidates (e.g. static
    # layouts that merge into fewer buckets): each set is its own plan.
    signature = f'{signature}|{",".join(sorted(candidates))}'
    ms = stored = cache.get(signature, candidates)
    if ms is None:
        with _lock, torch.no_grad():
            timings = time_interleaved(candidates, MEASURE_ROUNDS)
        # The minimum: other processes' load only ever adds time, so over a
        # few rounds the fastest sample is the least disturbed estimate.
        ms = {name: t.min for name, t in timings.items()}
    # Chosen from the times each time (cached ones too): one rule.
    choice = min(ms, key=ms.get)
    if default in ms and ms[choice] > (1 - SWITCH_MARGIN) * ms[default]:
        choice = default
    if stored is None or cache.entries[signature].get('choice') != choice:
        cache.put(signature, choice, ms)
    chosen[signature] = choice
    return choice


#: (cache, its location settings, forced setting, a call's plan fields) ->
#: candidate. A layer's repeated calls find their plan in one look-up,
#: without building a signature string and the candidates' closures (that
#: cost ~25 us a call, ~0.4 ms of a 12 ms MobileNetV2 at 224x224).
_remembered: Dict[tuple, str] = {}


def choose_once(fields: tuple, names: tuple,
                timed: Callable[[], Dict[str, Callable]], **kwargs) -> str:
    """:func:`choose` among the candidates ``names`` for the signature
    ``'|'.join(map(str, fields))``, remembered per ``fields`` and ``names``
    (and per cache file and forced setting: changing either plans anew).
    ``timed()`` builds the candidates' timed calls, only when the choice is
    not remembered."""
    key = (cache, os.environ.get(CACHE_ENV), os.environ.get('XDG_CACHE_HOME'),
           forced_plan(), fields, names)
    choice = _remembered.get(key)
    if choice is None:
        choice = _remembered[key] = choose('|'.join(map(str, fields)),
                                           timed(), **kwargs)
    return choice


def chosen_counts() -> Dict[str, int]:
    """How often each candidate was chosen by this process's plans
    (measured or read from the cache): which executions a model runs."""
    counts: Dict[str, int] = {}
    for choice in chosen.values():
        counts[choice] = counts.get(choice, 0) + 1
    return counts


# -- static ragged groups ---------------------------------------------------
class _DenseZeroWeights:
    """The layer as one dense conv (zero weights where nothing connects)."""

    def __init__(self, layer, rows: Tensor, blocks: List[Tensor],
                 in_sets: List[Tensor]):
        weight = blocks[0].new_zeros(layer.out_channels, layer.in_channels,
                                     *layer.kernel_size)
        first = 0
        for block, ins in zip(blocks, in_sets):
            o = block.shape[0]
            weight[first:first + o, ins] = block
            first += o
        self.weight = weight[rows].contiguous()
        self.bias = None if layer.bias is None else layer.bias.detach()[rows]
        self.conv = (layer.stride, layer.padding, layer.dilation)

    def __call__(self, input):
        return F.conv2d(input, self.weight, self.bias, *self.conv)


class _BucketedGroups:
    """The groups packed into ``buckets`` equal, padded groups: one
    ``index_select`` of the inputs, one grouped conv, one ``index_select``
    of the outputs (skipped when already in order)."""

    def __init__(self, layer, rows: Tensor, blocks: List[Tensor],
                 in_sets: List[Tensor], buckets: int):
        members = _pack(blocks, in_sets, buckets)
        unions = [
            torch.unique(torch.cat([in_sets[g] for g in m]))
            if m else in_sets[0].new_empty(0) for m in members
        ]
        width = max(max(len(u) for u in unions), 1)
        height = max(sum(blocks[g].shape[0] for g in m) for m in members)
        kh, kw = layer.kernel_size
        weight = blocks[0].new_zeros(buckets * height, width, kh, kw)
        in_index = torch.zeros(buckets * width, dtype=torch.long)
        # Position of each group-order output row in the conv's output.
        source = torch.empty(layer.out_channels, dtype=torch.long)
        starts = torch.tensor([0] + [b.shape[0] for b in blocks]).cumsum(0)
        for b, (group_ids, union) in enumerate(zip(members, unions)):
            in_index[b * width:b * width + len(union)] = union
            row = b * height
            for g in group_ids:
                o = blocks[g].shape[0]
                cols = torch.searchsorted(union, in_sets[g])
                weight[row:row + o, cols] = blocks[g]
                source[starts[g]:starts[g] + o] = torch.arange(row, row + o)
                row += o
        self.weight = weight
        self.in_index = in_index.to(weight.device)
        self.out_index = source[rows].to(weight.device)
        self.reorder = not torch.equal(self.out_index.cpu(),
                                       torch.arange(buckets * height))
        self.bias = None
        if layer.bias is not None:  # bias after the output gather
            self.bias = layer.bias.detach()[rows][:, None, None]
        self.conv = (layer.stride, layer.padding, layer.dilation, buckets)
        self.macs = buckets * height * width

    def __call__(self, input):
        out = F.conv2d(input.index_select(1, self.in_index), self.weight,
                       None, *self.conv)
        if self.reorder:
            out = out.index_select(1, self.out_index)
        return out if self.bias is None else out + self.bias


def _pack(blocks, in_sets, buckets) -> List[List[int]]:
    """Groups into ``buckets`` bins: largest first, each into the bin whose
    input union grows least among those with the fewest outputs (ties),
    keeping output counts balanced (the conv pads every bin to the
    largest)."""
    order = sorted(range(len(blocks)), key=lambda g: -blocks[g].shape[0])
    members = [[] for _ in range(buckets)]
    rows = [0] * buckets
    unions = [set() for _ in range(buckets)]
    for g in order:
        ins = set(in_sets[g].tolist())
        least = min(rows)
        candidates = [b for b in range(buckets)
                      if rows[b] <= least + blocks[g].shape[0]]
        best = min(candidates, key=lambda b: (len(ins - unions[b]), rows[b]))
        members[best].append(g)
        rows[best] += blocks[g].shape[0]
        unions[best] |= ins
    return members


def _ragged_layout(layer) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    """(rows, blocks, in_sets) of a ragged layer: ``rows[p]`` is the
    group-order row at output position ``p`` (the layer's reorder applied
    or not, as its forward does)."""
    blocks = unpack_weights(layer.weight.detach(), layer._in_sizes,
                            layer._out_sizes, layer.kernel_size)
    in_sets = list(layer.in_index.cpu().split(layer._in_sizes))
    if layer._reorder:
        rows = layer.output_index.cpu()
    else:
        rows = torch.arange(layer.out_channels)
    return rows.to(layer.weight.device), blocks, in_sets


def _ragged_kernel_call(layer):
    def run(input):
        out = _ragged_kernel(input, layer.weight, layer.bias, layer.in_index,
                             layer._in_sizes, layer._out_sizes,
                             layer.kernel_size, layer.stride, layer.padding,
                             layer.dilation)
        if layer._reorder:
            out = out.index_select(1, layer.output_index)
        return out

    return run


def state_key(tensors) -> tuple:
    """Changes whenever one of ``tensors`` (None allowed) is replaced or
    modified in place: the key of anything computed from them."""
    return tuple((id(t), t._version) if t is not None else None
                 for t in tensors)


def _state_key(layer) -> tuple:
    """Changes whenever a tensor the candidates were built from does."""
    return state_key((layer.weight, layer.bias, layer.in_index,
                      layer.output_index))


def _ragged_candidates(layer) -> Dict[str, Callable[[Tensor], Tensor]]:
    """Built once per layer state (weights, layout) and cached on it."""
    key = _state_key(layer)
    cached = getattr(layer, '_plan_candidates', None)
    if cached is not None and cached[0] == key:
        return cached[1]
    candidates = {'kernel': _ragged_kernel_call(layer)}
    if layer.weight.numel() and all(s > 0 for s in layer._out_sizes):
        rows, blocks, in_sets = _ragged_layout(layer)
        dense = layer.in_channels * layer.out_channels
        candidates['dense'] = _DenseZeroWeights(layer, rows, blocks, in_sets)
        for buckets in BUCKETS:
            if buckets > len(blocks):
                break
            packed = _BucketedGroups(layer, rows, blocks, in_sets, buckets)
            if packed.macs < dense:  # else no better than 'dense'
                candidates[f'grouped{buckets}'] = packed
    layer._plan_candidates = (key, candidates)
    return candidates


def ragged_forward(layer, input: Tensor) -> Tensor:
    """A deployed ragged layer's output (in the order its forward emits),
    by the planned candidate."""
    candidates = _ragged_candidates(layer)
    if len(candidates) == 1 or not plannable(input):
        return candidates['kernel'](input)
    n, _, h, w = input.shape
    kh, kw = layer.kernel_size
    density = layer.connections / (layer.in_channels * layer.out_channels)
    choice = choose_once(
        ('ragged', layer.in_channels, layer.out_channels, f'{kh}x{kw}',
         layer.stride, layer.padding, layer.dilation, len(layer._in_sizes),
         f'd{density_bucket(density)}', f'n{n}', f'hw{size_bucket(h, w)}',
         input.dtype, f't{torch.get_num_threads()}'), tuple(candidates),
        lambda: {name: (lambda c=c: c(input))
                 for name, c in candidates.items()})
    return candidates[choice](input)


# -- dynamic masks ----------------------------------------------------------
def _active_channels(mask: Tensor) -> Tuple[Tensor, Tensor, int]:
    """Per group of ``mask`` ``[G, C]``: active channel indices, padded to
    the largest count with inactive channels of scale 0. Returns ``(index [G, k], scale
    [G, k], k)``."""
    active = mask != 0
    counts = active.sum(1)
    k = int(counts.max()) if counts.numel() else 0
    if k == 0:
        return None, None, 0
    # Stable sort puts each row's active channels first, in channel order.
    order = torch.sort(active.to(torch.int8), dim=1, descending=True,
                       stable=True).indices[:, :k]
    scale = mask.gather(1, order)
    scale = torch.where(active.gather(1, order), scale, scale.new_zeros(()))
    return order, scale, k


def _gathered(input, weight, bias, mask, out_mask, stride, padding,
              dilation):
    """Per sample: each group's active channels (scales folded into the
    gathered weight), one ``groups=G`` conv; with one group and an
    ``out_mask``, only the read output channels."""
    n, c = input.shape[:2]
    o, g = weight.shape[0], mask.shape[1]
    per_group = o // g
    outs = []
    for i in range(n):
        index, scale, k = _active_channels(mask[i])
        x = input[i:i + 1]
        rows = None
        if g == 1 and out_mask is not None:
            rows = torch.nonzero(out_mask[i]).flatten()
        if k == 0 or (rows is not None and rows.numel() == 0):
            # Nothing read (the conv of zeros: its bias) or nothing written.
            out = _conv_shape_zeros(input, weight, stride, padding, dilation)
            if bias is not None and k == 0:
                out = out + bias[:, None, None]
            outs.append(out)
            continue
        w = weight.view(g, per_group, c, *weight.shape[2:])
        if rows is not None:
            w = w[:, rows]
        w = torch.gather(w, 2, index[:, None, :, None, None].expand(
            -1, w.shape[1], -1, *weight.shape[2:]))
        w = (w * scale[:, None, :, None, None]).flatten(0, 1)
        b = bias if rows is None or bias is None else bias[rows]
        out = F.conv2d(x.index_select(1, index.flatten()), w, b, stride,
                       padding, dilation, g)
        if rows is not None:
            full = out.new_zeros(1, o, *out.shape[2:])
            full[:, rows] = out
            out = full
        outs.append(out)
    out = torch.cat(outs) if n > 1 else outs[0]
    return _apply_out_mask(out, out_mask)


def _batch_union(input, weight, bias, mask, out_mask, stride, padding,
                 dilation):
    """Per group, the union over the batch of its active channels, the
    input masked there (zeros where a sample does not read): one grouped
    conv for the whole batch."""
    n, c = input.shape[:2]
    g = mask.shape[1]
    union = mask.ne(0).any(0)  # [G, C]
    index, _, k = _active_channels(union.to(mask.dtype))
    if k == 0:
        out = _conv_shape_zeros(input, weight, stride, padding,
                                dilation).expand(n, -1, -1, -1).clone()
        if bias is not None:
            out = out + bias[:, None, None]
        return _apply_out_mask(out, out_mask)
    flat = index.flatten()
    # Padded slots are channels no sample reads in that group: scale 0.
    scale = mask.gather(2, index[None].expand(n, -1, -1)).flatten(1)
    x = input.index_select(1, flat) * scale[:, :, None, None]
    w = weight.view(g, -1, c, *weight.shape[2:])
    w = torch.gather(w, 2, index[:, None, :, None, None].expand(
        -1, w.shape[1], -1, *weight.shape[2:])).flatten(0, 1)
    out = F.conv2d(x, w, bias, stride, padding, dilation, g)
    return _apply_out_mask(out, out_mask)


def _gathered_gemm(input, weight, bias, mask, out_mask, stride, padding,
                   dilation):
    """Pointwise convs: every sample's and group's active channels gathered
    into a dense buffer (padded to the batch's largest count, scale 0), the
    scales folded into the gathered weight rows: one batched GEMM for the
    whole batch."""
    n, c = input.shape[:2]
    o, g = weight.shape[0], mask.shape[1]
    x = input[:, :, ::stride[0], ::stride[1]]
    h, w = x.shape[2:]
    active = mask != 0  # [N, G, C]
    k = int(active.sum(2).max()) if active.numel() else 0
    if k == 0:
        out = x.new_zeros(n, o, h, w)
        if bias is not None:
            out = out + bias[:, None, None]
        return _apply_out_mask(out, out_mask)
    order = torch.sort(active.to(torch.int8), dim=2, descending=True,
                       stable=True).indices[..., :k]  # [N, G, k]
    scale = torch.where(active.gather(2, order), mask.gather(2, order),
                        mask.new_zeros(()))
    rows = x.reshape(n, c, h * w)
    gathered = torch.gather(rows, 1, order.reshape(n, g * k, 1).expand(
        -1, -1, h * w)).view(n, g, k, h * w)
    per_group = o // g
    w_groups = weight.reshape(g, per_group, c)
    w_sel = torch.gather(
        w_groups[None].expand(n, -1, -1, -1), 3,
        order[:, :, None, :].expand(-1, -1, per_group, -1))
    w_sel = w_sel * scale[:, :, None, :]
    out = torch.matmul(w_sel, gathered).view(n, o, h, w)
    if bias is not None:
        out.add_(bias[:, None, None])  # in place: a detection-size output
    return _apply_out_mask(out, out_mask)


def _masked_dense(input, weight, bias, mask, out_mask, stride, padding,
                  dilation):
    """One group: the dense conv of the masked input."""
    out = F.conv2d(input * mask[:, 0, :, None, None], weight, bias, stride,
                   padding, dilation)
    return _apply_out_mask(out, out_mask)


def _conv_shape_zeros(input, weight, stride, padding, dilation):
    size = conv_output_size(input.shape[2:], weight.shape[2:], stride,
                            padding, dilation)
    return input.new_zeros(1, weight.shape[0], *size)


def _apply_out_mask(out, out_mask):
    if out_mask is None:
        return out
    return torch.where(out_mask[:, :, None, None] != 0, out,
                       out.new_zeros(()))


def _sparse_op(input, weight, bias, mask, out_mask, stride, padding, dilation,
               interleaved):
    return _dynamic_kernel(input, weight, bias, mask, out_mask, stride,
                           padding, dilation, interleaved=interleaved)


def _group_major(candidate):
    """A candidate for contiguous groups that also runs interleaved ones
    (:func:`mmlgc.ops.reference.as_group_major`)."""

    def run(input, weight, bias, mask, out_mask, stride, padding, dilation,
            interleaved):
        args = (input, weight, bias, mask, out_mask, stride, padding,
                dilation)
        if interleaved and mask.shape[1] > 1:
            return as_group_major(candidate, *args)
        return candidate(*args)

    return run


# The dynamic candidates, each also for interleaved groups.
_DYNAMIC_CANDIDATES = dict(kernel=_sparse_op,
                           gathered=_group_major(_gathered),
                           batch_union=_group_major(_batch_union),
                           dense=_group_major(_masked_dense),
                           gemm=_group_major(_gathered_gemm))


def dynamic_group_conv(input: Tensor,
                       weight: Tensor,
                       bias: Optional[Tensor],
                       mask: Tensor,
                       out_mask: Optional[Tensor] = None,
                       stride=1,
                       padding=0,
                       dilation=1,
                       sparse: bool = True,
                       interleaved: bool = False) -> Tensor:
    """:func:`mmlgc.ops.dynamic_group_conv` (same arguments, same result up
    to rounding) by the planned candidate. ``sparse=False``, masks that need
    gradients, and non-CPU inputs go to the op itself, which chooses between
    its kernels and the reference."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    args = (input, weight, bias, mask, out_mask, stride, padding, dilation,
            interleaved)
    if not sparse or not plannable(input) or (
            torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in (mask, out_mask))):
        return _dynamic_kernel(*args[:-1], sparse=sparse,
                               interleaved=interleaved)
    n, c, h, w = input.shape
    g = mask.shape[1]
    kh, kw = weight.shape[2:]
    valid = dict(kernel=True, gathered=True, batch_union=n > 1, dense=g == 1,
                 gemm=(kh, kw) == (1, 1) and padding == (0, 0))
    candidates = {name: _DYNAMIC_CANDIDATES[name]
                  for name, ok in valid.items() if ok}
    density = int(torch.count_nonzero(mask)) / max(mask.numel(), 1)
    choice = choose_once(
        ('dynamic', c, weight.shape[0], f'{kh}x{kw}', stride, padding,
         dilation, g, out_mask is not None, f'd{density_bucket(density)}',
         f'n{n}', f'hw{size_bucket(h, w)}', input.dtype,
         f't{torch.get_num_threads()}') + (('interleaved', )
                                          if interleaved else ()),
        tuple(candidates),
        lambda: {name: (lambda f=f: f(*args))
                 for name, f in candidates.items()})
    return candidates[choice](*args)


# -- max pooling -------------------------------------------------------------
def _separable_max_pool(input, kernel_size, stride, padding):
    """Maxima over strided views, along the rows then the columns (the
    padding as -inf, as ATen's max pool treats it; NaN propagates)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    x = F.pad(input, (pw, pw, ph, ph), value=float('-inf'))
    out_h = (input.shape[2] + 2 * ph - kh) // sh + 1
    out_w = (input.shape[3] + 2 * pw - kw) // sw + 1
    rows = x[..., 0:sw * (out_w - 1) + 1:sw]
    for j in range(1, kw):
        rows = torch.maximum(rows, x[..., j:j + sw * (out_w - 1) + 1:sw])
    out = rows[..., 0:sh * (out_h - 1) + 1:sh, :]
    for i in range(1, kh):
        out = torch.maximum(out, rows[..., i:i + sh * (out_h - 1) + 1:sh, :])
    return out


class PlannedMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (no indices, no dilation, floor mode) by the fastest
    exact execution on this CPU: ATen's (``native``; its NCHW kernel took
    10-20 ms for a ResNet stem's 64x112x112 on one thread here, a quarter
    of a ResNet-18), through ``channels_last`` (copy in and out), or
    ``separable`` maxima of strided views. Deployed backbones use it;
    ``benchmark_model.py`` gives the dense form the same, so speed-ups
    still measure the grouped convs."""

    def forward(self, input: Tensor) -> Tensor:
        kernel, stride = _pair(self.kernel_size), _pair(self.stride or
                                                        self.kernel_size)
        padding = _pair(self.padding)
        native = (lambda: F.max_pool2d(input, kernel, stride, padding))
        if (input.dim() != 4 or not plannable(input) or
                _pair(self.dilation) != (1, 1) or self.ceil_mode or
                self.return_indices):
            return super().forward(input)
        candidates = {
            'native': native,
            'channels_last': lambda: F.max_pool2d(
                input.contiguous(memory_format=torch.channels_last), kernel,
                stride, padding).contiguous(),
            'separable': lambda: _separable_max_pool(input, kernel, stride,
                                                     padding),
        }
        n, c, h, w = input.shape
        # A forced conv execution (e.g. 'kernel') leaves the pools planned.
        choice = choose_once(
            ('max_pool', c, kernel, stride, padding, f'n{n}',
             f'hw{size_bucket(h, w)}', input.dtype,
             f't{torch.get_num_threads()}'), tuple(candidates),
            lambda: candidates, default='native', forced_default=False)
        return candidates[choice]()


def plan_max_pools(module: nn.Module) -> int:
    """Swap every plain ``nn.MaxPool2d`` under ``module`` for a
    :class:`PlannedMaxPool2d` with the same settings. Returns how many."""
    swapped = 0
    for name, child in list(module.named_modules()):
        if type(child) is not nn.MaxPool2d:
            continue
        parent_name, _, attr = name.rpartition('.')
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, PlannedMaxPool2d(
            child.kernel_size, child.stride, child.padding, child.dilation,
            child.return_indices, child.ceil_mode))
        swapped += 1
    return swapped


__all__ = [
    'CACHE_ENV', 'PLAN_ENV', 'cache', 'chosen_counts', 'dynamic_group_conv',
    'force_plan', 'forced_plan', 'plan_max_pools', 'PlannedMaxPool2d',
    'ragged_forward'
]
