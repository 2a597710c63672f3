"""CPU latency of the dynamic group conv against the dense conv and against
the masked form the MSGC/DGC references run.

For every 3x3 and 1x1 conv shape of a torchvision ResNet-50 (bottleneck
convs and downsample projections, each weighted by how often it occurs) at a
224x224 input, and for the 3x3 shapes at a detection-size input, at each
batch size and density, three forms are timed in the same run:

* ``dense``: ``F.conv2d`` with the full weight;
* ``reference``: the input replicated once per group, masked, and one
  ``groups=G`` conv (``mmlgc.ops.reference.dynamic_group_conv``);
* ``mmlgc``: ``mmlgc.ops.dynamic_group_conv`` (the compiled op);
* ``planned``: ``mmlgc.ops.plans.dynamic_group_conv``, what deployed layers
  run: the fastest exact execution measured on this CPU for the shape and
  density (the op, gathered channels on one grouped oneDNN conv, ...;
  plans cached in ``$MMLGC_PLAN_CACHE``).

Masks are per sample: every group of every sample reads ``round(d * C)``
channels drawn at random (seeded). Timings are medians over rounds; in
each round the three forms run interleaved, in an order that rotates from
round to round, and each is timed on its second of two back-to-back calls, so
that every form is measured with its own data in cache (the first call after
another form's large conv otherwise pays for that form's cache pollution --
measured up to 10% here, always on whichever form came second). The machine
drifts by up to 2x between runs: compare only within one run. Speed-ups are
dense time / form time, summed over the layers of the network.

    python tools/analysis/benchmark_ops.py                  # everything
    python tools/analysis/benchmark_ops.py --batch 1 --kinds 3x3 --no-detection
"""
import argparse
import json
import platform
import sys
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from mmlgc.ops import dynamic_group_conv, ext_available, plans, reference
from mmlgc.ops.timing import NOISY_SPREAD, pin_allocator, time_interleaved

FORMS = ('dense', 'reference', 'mmlgc', 'planned')


@dataclass
class ConvShape:
    name: str
    kind: str  # '3x3' or '1x1'
    in_channels: int
    out_channels: int
    size: tuple  # input (h, w)
    stride: int
    count: int  # occurrences in the network


def resnet50_shapes(height, width, kinds):
    """Unique conv shapes of torchvision's ResNet-50 (stride on the 3x3)."""
    shapes = {}

    def add(name, kind, cin, cout, size, stride):
        if kind not in kinds:
            return
        key = (kind, cin, cout, size, stride)
        if key in shapes:
            shapes[key].count += 1
        else:
            shapes[key] = ConvShape(name, kind, cin, cout, size, stride, 1)

    size = (height // 4, width // 4)  # after the stem and max-pool
    in_channels = 64
    for stage, (width_, blocks) in enumerate([(64, 3), (128, 4), (256, 6),
                                              (512, 3)], 1):
        for block in range(blocks):
            stride = 2 if stage > 1 and block == 0 else 1
            out_size = tuple((s - 1) // stride + 1 for s in size)
            prefix = f'layer{stage}.{block}'
            add(f'{prefix}.conv1', '1x1', in_channels, width_, size, 1)
            add(f'{prefix}.conv2', '3x3', width_, width_, size, stride)
            add(f'{prefix}.conv3', '1x1', width_, 4 * width_, out_size, 1)
            if block == 0:
                add(f'{prefix}.downsample', '1x1', in_channels, 4 * width_,
                    size, stride)
            in_channels, size = 4 * width_, out_size
    return list(shapes.values())


def exact_density_masks(batch, groups, channels, density, generator):
    keep = round(density * channels)
    mask = torch.zeros(batch, groups, channels)
    for n in range(batch):
        for g in range(groups):
            kept = torch.randperm(channels, generator=generator)[:keep]
            mask[n, g, kept] = 1
    return mask


def time_forms(fns, rounds, warmup):
    """Per form: median, quartiles, min/max (ms) over interleaved rounds
    (:func:`mmlgc.ops.timing.time_interleaved`)."""
    return {name: t.summary()
            for name, t in time_interleaved(fns, rounds, warmup).items()}


def run(args):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    inputs = [('224x224', 224, 224, ('3x3', '1x1'))]
    if args.detection:
        inputs.append((f'{args.detection_size[0]}x{args.detection_size[1]}',
                       *args.detection_size, ('3x3', )))
    results = []
    for input_name, height, width, input_kinds in inputs:
        kinds = [k for k in args.kinds if k in input_kinds]
        shapes = resnet50_shapes(height, width, kinds)
        batches = args.batch if input_name == '224x224' else [1]
        for batch in batches:
            for density in args.densities:
                for shape in shapes:
                    k = 3 if shape.kind == '3x3' else 1
                    x = torch.randn(batch, shape.in_channels, *shape.size)
                    weight = torch.randn(shape.out_channels,
                                         shape.in_channels, k, k)
                    groups = (args.groups_1x1 if shape.kind == '1x1'
                              else args.groups)
                    mask = exact_density_masks(batch, groups,
                                               shape.in_channels, density,
                                               generator)
                    conv = (shape.stride, k // 2, 1)
                    fns = {
                        'dense':
                        lambda: F.conv2d(x, weight, None, *conv),
                        'reference':
                        lambda: reference.dynamic_group_conv(
                            x, weight, None, mask, None, *conv),
                        'mmlgc':
                        lambda: dynamic_group_conv(x, weight, None, mask,
                                                   None, *conv),
                        'planned':
                        lambda: plans.dynamic_group_conv(
                            x, weight, None, mask, None, *conv),
                    }
                    with torch.no_grad():
                        timed = time_forms(fns, args.rounds, args.warmup)
                    row = dict(input=input_name, batch=batch, density=density,
                               groups=groups, **asdict(shape))
                    for form in FORMS:
                        row[f'{form}_ms'] = timed[form]['median_ms']
                        row[f'{form}_min_ms'] = timed[form]['min_ms']
                        row[f'{form}_spread'] = timed[form]['spread']
                    results.append(row)
                    print(
                        f'{input_name} N={batch} d={density:<4} '
                        f'{shape.name:<20} {shape.in_channels:>4}->'
                        f'{shape.out_channels:<4} {shape.size[0]:>3}x'
                        f'{shape.size[1]:<3} s{shape.stride} x{shape.count} | '
                        + ' '.join(f'{f} {row[f"{f}_ms"]:7.3f}'
                                   for f in FORMS) +
                        f' | mmlgc {row["dense_ms"] / row["mmlgc_ms"]:.2f}x'
                        f' planned {row["dense_ms"] / row["planned_ms"]:.2f}x',
                        file=sys.stderr,
                        flush=True)
    return results


def summarise(results):
    groups = {}
    for r in results:
        key = (r['input'], r['kind'], r['batch'], r['density'])
        total = groups.setdefault(key, {f: 0.0 for f in FORMS})
        for f in FORMS:
            total[f] += r[f'{f}_ms'] * r['count']
        # The widest relative IQR of any form on any layer of the group.
        total['spread'] = max(total.get('spread', 0.0),
                              *(r[f'{f}_spread'] for f in FORMS))
    summary = []
    for (input_name, kind, batch, density), total in groups.items():
        if total['spread'] > NOISY_SPREAD:
            print(f'warning: {input_name} {kind} N={batch} d={density}: a '
                  f'layer\'s rounds spread by {total["spread"]:.0%} of the '
                  'median (machine busy): re-measure before trusting it',
                  file=sys.stderr)
        entry = dict(input=input_name, kind=kind, batch=batch, density=density,
                     max_spread=total['spread'],
                     **{f'{f}_ms': total[f] for f in FORMS},
                     speedup_mmlgc=total['dense'] / total['mmlgc'],
                     speedup_planned=total['dense'] / total['planned'],
                     speedup_reference=total['dense'] / total['reference'])
        if input_name == '224x224' and kind == '3x3' and batch == 1:
            entry['target'] = 0.8 / density
            entry['meets_target'] = (max(entry['speedup_mmlgc'],
                                         entry['speedup_planned'])
                                     >= entry['target'])
        summary.append(entry)
    return summary


def print_table(summary):
    header = ('| input | convs | batch | density | dense ms | reference ms '
              '(x) | mmlgc ms (x) | planned ms (x) | max IQR/median | target |')
    print(header)
    print('|' + '---|' * 10)
    for s in summary:
        target = (f'>= {s["target"]:.1f}x '
                  f'{"met" if s["meets_target"] else "missed"}'
                  if 'target' in s else '')
        print(f'| {s["input"]} | {s["kind"]} | {s["batch"]} | {s["density"]} '
              f'| {s["dense_ms"]:.1f} | {s["reference_ms"]:.1f} '
              f'({s["speedup_reference"]:.2f}x) | {s["mmlgc_ms"]:.1f} '
              f'({s["speedup_mmlgc"]:.2f}x) | {s["planned_ms"]:.1f} '
              f'({s["speedup_planned"]:.2f}x) | {s["max_spread"]:.0%} '
              f'| {target} |')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--densities', type=float, nargs='+',
                        default=[1.0, 0.5, 0.25])
    parser.add_argument('--groups', type=int, default=4,
                        help='groups of the 3x3 convs')
    parser.add_argument('--groups-1x1', type=int, default=4,
                        help='groups of the 1x1 convs (MSGC masks them per '
                        'input channel: 1)')
    parser.add_argument('--kinds', nargs='+', default=['3x3', '1x1'],
                        choices=['3x3', '1x1'])
    parser.add_argument('--detection', action=argparse.BooleanOptionalAction,
                        default=True,
                        help='also time the 3x3 shapes at a detection input '
                        '(batch 1)')
    parser.add_argument('--detection-size', type=int, nargs=2,
                        default=[800, 1216], metavar=('H', 'W'))
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch\'s choice)')
    parser.add_argument('--default-allocator', action='store_true',
                        help='leave glibc\'s allocator at its defaults '
                        '(detection-size tensors are then page-faulted in '
                        'on every call)')
    parser.add_argument('--out', default='work_dirs/benchmark_ops.json',
                        help='JSON with per-layer times and the summary')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not ext_available():
        sys.exit('mmlgc._ext is not built: this would time the reference '
                 'twice. Build it first (make install).')
    allocator = ('pinned' if not args.default_allocator and pin_allocator()
                 else 'default')
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args)
    summary = summarise(results)
    print_table(summary)
    report = dict(
        machine=dict(platform=platform.platform(),
                     processor=platform.processor(),
                     torch=torch.__version__,
                     threads=torch.get_num_threads(),
                     allocator=allocator),
        config={k: v for k, v in vars(args).items() if k != 'out'},
        summary=summary,
        layers=results)
    import os
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=1)
    print(f'wrote {args.out}', file=sys.stderr)


if __name__ == '__main__':
    main()
