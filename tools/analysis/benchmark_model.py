"""CPU latency of a grouped backbone (and its whole detector): dense vs
masked (the reference's execution) vs deployed (mmlgc's ops), ratios from
one run, next to the measured MACs.

    # an MSGC backbone, masks calibrated to a MAC budget (no training needed)
    python tools/analysis/benchmark_model.py --backbone resnet50 --target 0.46
    # a trained model: its own masks, backbone and whole detector
    python tools/analysis/benchmark_model.py --config CONFIG --checkpoint CKPT

Forms, all in eval mode at batch 1 (``--batch``):

* ``dense``: the dense network of the same architecture (mmdet ResNet /
  MobileNetV2), BN folded into the convs, as a deployed dense model runs;
* ``masked``: the MSGC model as the reference runs it at test time, every
  dynamic conv in the masked dense form (input replicated per head);
* ``deployed``: ``switch_to_deploy()`` (BN folded, dynamic convs through
  ``mmlgc.ops.dynamic_group_conv`` computing only active channel pairs).

Without a checkpoint the masks come from the gates' biases: every mask
generator's last conv gets weight 0 and a bias that opens a random
(seeded) fraction ``d`` of its channels, ``d`` bisected so that the
backbone's measured MACs ratio (``mmlgc.complexity``, at the benchmarked input
size, generators included) equals ``--target``. Static masks at batch 1 time
the same work as per-sample masks would.

Timing: median over ``--rounds`` rounds; in each round the forms run in a
rotating order, each timed on the second of two back-to-back calls (its own
data warm in cache). This machine drifts by up to 2x between runs: compare
ratios within one run only. Results: a table and ``--out`` (JSON).
"""
import argparse
import copy
import json
import statistics
import time

import torch
from mmcv.cnn import fuse_conv_bn
from mmengine.registry import DefaultScope, init_default_scope

import mmlgc  # noqa: F401  (registers modules, applies compat fixes)
from mmlgc.complexity import collect_costs
from mmlgc.layers import MaskGenerator
from mmlgc.models import MSGCMobileNetV2, MSGCResNet

FORMS = ('dense', 'masked', 'deployed')
#: MSGC-only backbone arguments, dropped for the dense counterpart.
MSGC_ARGS = ('heads', 'attention', 'squeeze', 'gate_bias', 'tau',
             'generator_norm_cfg', 'deploy')
DENSE_TYPES = {'MSGCResNet': 'ResNet', 'MSGCMobileNetV2': 'MobileNetV2'}
BACKBONES = {
    'resnet18': (MSGCResNet, dict(depth=18, out_indices=(0, 1, 2, 3))),
    'resnet50': (MSGCResNet, dict(depth=50, out_indices=(0, 1, 2, 3))),
    'mobilenet_v2': (MSGCMobileNetV2, dict(out_indices=(1, 2, 4, 6))),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', help='an mmlgc detector/classifier config')
    parser.add_argument('--checkpoint', help='its trained checkpoint')
    parser.add_argument('--backbone', choices=sorted(BACKBONES),
                        default='resnet50',
                        help='without --config: which MSGC backbone')
    parser.add_argument('--target', type=float, default=0.46,
                        help='without --checkpoint: MACs ratio to calibrate '
                        'the masks to')
    parser.add_argument('--sizes', nargs='+', default=['224', '800x1216'],
                        help='input sizes, H or HxW')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--no-detector', action='store_true',
                        help='with --config: time the backbone only')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='work_dirs/benchmark_model.json')
    return parser.parse_args()


def parse_size(text):
    h, _, w = text.partition('x')
    return int(h), int(w or h)


def dense_backbone_cfg(cfg):
    """The dense mm* backbone config an MSGC backbone config extends."""
    cfg = {k: v for k, v in cfg.items() if k not in MSGC_ARGS + ('init_cfg', )}
    name = cfg['type'].split('.')[-1]
    if name not in DENSE_TYPES:
        raise ValueError(f'no dense counterpart known for {cfg["type"]}')
    cfg['type'] = DENSE_TYPES[name]
    return cfg


def build_from_config(path, checkpoint):
    """(MSGC model, dense model) from an mmlgc config: the same config with
    the backbone swapped for its dense counterpart."""
    from mmengine.runner import load_checkpoint

    from mmlgc.utils.config import load_config
    cfg = load_config(path)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model_cfg = cfg.model.copy()
    model_cfg.backbone.pop('init_cfg', None)
    dense_cfg = copy.deepcopy(model_cfg)
    dense_cfg.backbone = dense_backbone_cfg(model_cfg.backbone)
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(model_cfg)
        dense = registry.build(dense_cfg)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
        # The dense model shares every weight the MSGC model has.
        dense.load_state_dict(model.state_dict(), strict=False)
    return model, dense


@torch.no_grad()
def calibrate_masks(backbone, x, target, seed):
    """Static masks opening a fraction ``d`` of every generator's channels,
    ``d`` bisected until the measured MACs ratio is ``target``. Returns
    (d, ratio)."""
    generators = [m for m in backbone.modules() if isinstance(m, MaskGenerator)]
    rng = torch.Generator().manual_seed(seed)
    orders = [torch.rand(m.heads * m.channels, generator=rng).argsort()
              for m in generators]

    def apply(density):
        for module, order in zip(generators, orders):
            last = module.layers[-1]
            last.weight.zero_()
            opened = round(density * order.numel())
            last.bias.fill_(-10.0)
            last.bias[order[:opened]] = 10.0
        backbone(x)
        return collect_costs(backbone).ratio.item()

    low, high = 0.0, 1.0
    for _ in range(20):
        mid = (low + high) / 2
        if apply(mid) > target:
            high = mid
        else:
            low = mid
    return low, apply(low)


def time_forms(forms, x, rounds):
    """Median ms of each callable, interleaved, rotating order, warm."""
    times = {name: [] for name in forms}
    names = list(forms)
    with torch.no_grad():
        for name in names:  # warm-up (allocations, oneDNN primitives)
            forms[name](x)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                forms[name](x)
                start = time.perf_counter()
                forms[name](x)
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def three_forms(model, dense):
    """dense (BN folded), masked (reference form) and deployed copies."""
    # mm* backbones' train()/eval() return None: call, then use the copy.
    dense, masked, deployed = (copy.deepcopy(m)
                               for m in (dense, model, model))
    for m in (dense, masked, deployed):
        m.eval()
    dense = fuse_conv_bn(dense)
    backbone = masked.backbone if hasattr(masked, 'backbone') else masked
    backbone.sparse_eval(False)
    from mmlgc.deploy import deploy_model
    deploy_model(deployed)
    return dict(dense=dense, masked=masked, deployed=deployed)


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    if args.config:
        model, dense = build_from_config(args.config, args.checkpoint)
        name = args.config
    else:
        cls, kwargs = BACKBONES[args.backbone]
        model = cls(**kwargs)
        dense = __import__('mmdet.models.backbones', fromlist=['x']).__dict__[
            DENSE_TYPES[cls.__name__]](**kwargs)
        dense.load_state_dict(model.state_dict(), strict=False)
        name = f'MSGC {args.backbone}'
    model.eval()
    dense.eval()
    backbone = model.backbone if hasattr(model, 'backbone') else model
    results = []
    for size in map(parse_size, args.sizes):
        x = torch.randn(args.batch, 3, *size)
        if args.checkpoint:
            with torch.no_grad():
                backbone(x)
            ratio, density = collect_costs(backbone).ratio.item(), None
        else:
            density, ratio = calibrate_masks(backbone, x, args.target,
                                             args.seed)
        forms = three_forms(model, dense)
        scopes = {'backbone': {k: getattr(v, 'backbone', v)
                               for k, v in forms.items()}}
        if hasattr(model, 'backbone') and not args.no_detector:
            scopes['detector'] = {
                k: (lambda m: lambda t: m(t, mode='tensor'))(v)
                for k, v in forms.items()
            }
        for scope, callables in scopes.items():
            ms = time_forms(callables, x, args.rounds)
            row = dict(model=name, scope=scope, size=list(size),
                       batch=args.batch, macs_ratio=ratio,
                       calibrated_density=density, ms=ms,
                       speedup={k: ms['dense'] / v for k, v in ms.items()})
            results.append(row)
            print(f'{name:>20} {scope:>8} {size[0]}x{size[1]} b{args.batch} '
                  f'MACs {ratio:.3f} | dense {ms["dense"]:8.1f} ms | masked '
                  f'{ms["masked"]:8.1f} ms ({row["speedup"]["masked"]:.2f}x)'
                  f' | deployed {ms["deployed"]:8.1f} ms '
                  f'({row["speedup"]["deployed"]:.2f}x)', flush=True)
    if args.out:
        import os
        os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(threads=torch.get_num_threads(), results=results),
                      f, indent=1)


if __name__ == '__main__':
    main()
