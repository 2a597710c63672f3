"""Every method's deployed backbone against its BN-folded dense counterpart,
in one run: tools/analysis/benchmark_model.py per backbone, size and batch
(a subprocess each, masks calibrated to ``--target``), collected into one
Markdown table of speed-ups and η (speed-up × MACs ratio; 1.0 = time
proportional to MACs). docs/measurements.md shows its output.

    python tools/analysis/speed_table.py --out work_dirs/speed --threads 1
    python tools/analysis/speed_table.py --out work_dirs/speed \\
        --backbones resnet50 dgc_resnet18 --sizes 224 --batches 1 8

Resumable: a (backbone, size, batch) whose JSON exists under ``--out`` is
not measured again; ``--table-only`` rebuilds ``table.md`` from them.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# The list: each method's ResNets and MobileNetV2 (MSGC's backbones
# are benchmark_model's plain names).
BACKBONES = ('resnet18', 'resnet50', 'mobilenet_v2', 'dgc_resnet18',
             'dgc_resnet50', 'sgcnn_resnet18', 'sgcnn_resnet50',
             'flgc_resnet18', 'flgc_resnet50', 'flgc_mobilenet_v2')
METHOD = dict(dgc='DGC', sgcnn='SG-CNN', flgc='FLGC')


def rounds_point(text):
    """``SIZE:BATCH=N`` (``--rounds-at``) as ``('SIZE:BATCH', N)``."""
    point, _, rounds = text.partition('=')
    if ':' not in point or not rounds.isdigit() or int(rounds) < 1:
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected SIZE:BATCH=ROUNDS, e.g. 800x1216:8=5')
    return point, int(rounds)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='work_dirs/speed')
    parser.add_argument('--backbones', nargs='+', default=list(BACKBONES),
                        choices=BACKBONES)
    parser.add_argument('--sizes', nargs='+', default=['224', '800x1216'])
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 8])
    parser.add_argument('--skip', nargs='+', default=[],
                        help='SIZE:BATCH pairs not to run (e.g. '
                        '800x1216:8)')
    parser.add_argument('--target', type=float, default=0.46)
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--rounds-at', nargs='+', default=[],
                        type=rounds_point, metavar='SIZE:BATCH=N',
                        help='other --rounds for some points (e.g. '
                        '800x1216:8=5, where a round takes minutes)')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--table-only', action='store_true')
    return parser.parse_args(argv)


def label(backbone):
    prefix = backbone.split('_')[0]
    method = METHOD.get(prefix)
    if method is None:
        return f'MSGC {pretty(backbone)}'
    return f'{method} {pretty(backbone[len(prefix) + 1:])}'


def pretty(name):
    return {'resnet18': 'ResNet-18', 'resnet50': 'ResNet-50',
            'mobilenet_v2': 'MobileNetV2'}.get(name, name)


def run_name(backbone, size, batch):
    return f'{backbone}_{size}_b{batch}'


def rounds_at(args, size, batch):
    return dict(args.rounds_at).get(f'{size}:{batch}', args.rounds)


def measure(args, backbone, size, batch):
    path = osp.join(args.out, run_name(backbone, size, batch) + '.json')
    if osp.isfile(path):
        return path
    command = [sys.executable, 'tools/analysis/benchmark_model.py',
               '--backbone', backbone, '--target', str(args.target),
               '--sizes', size, '--batch', str(batch), '--rounds',
               str(rounds_at(args, size, batch)), '--ops-only', '--out',
               path + '.tmp']
    if args.threads:
        command += ['--threads', str(args.threads)]
    print('==>', ' '.join(command[1:]), flush=True)
    if subprocess.run(command, cwd=REPO).returncode != 0:
        print(f'speed_table: {backbone} {size} b{batch} failed', flush=True)
        return None
    os.replace(path + '.tmp', path)
    return path


def row(record):
    """One table row from a benchmark_model.py record."""
    t = record['timings']

    def cell(form):
        spread = t[form]['spread']
        return (f'{record["speedup"][form]:.2f}× '
                f'({t[form]["median_ms"]:.1f} ms ±{100 * spread:.0f} %)')

    return [f'{record["size"][0]}×{record["size"][1]}',
            str(record['batch']), f'{record["macs_ratio"]:.2f}',
            f'{t["dense"]["median_ms"]:.1f} ms ±'
            f'{100 * t["dense"]["spread"]:.0f} %',
            cell('masked') if 'masked' in t else '-', cell('deployed'),
            f'{record["eta"]:.2f}', cell('ops-only') if 'ops-only' in t
            else '-']


def table(runs):
    """``runs``: (backbone, benchmark JSON) in order."""
    lines = ['| backbone | size | batch | MACs × dense | dense | masked '
             '(speed-up) | deployed (speed-up) | η | op only, no plan | '
             'executions chosen |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for backbone, data in runs:
        for record in data['results']:
            if record['scope'] != 'backbone':
                continue
            cells = row(record) + [', '.join(f'{k} ×{v}' for k, v in sorted(
                data.get('executions', {}).items()))]
            lines.append('| ' + ' | '.join([label(backbone)] + cells) + ' |')
    lines += ['', 'Median of interleaved rounds (± the interquartile range '
              'as a fraction of the median); speed-up = dense / form; η = '
              'deployed speed-up × MACs ratio.']
    allocators = sorted({data.get('allocator', 'default')
                         for _, data in runs})
    lines.append(f'Allocator: {" and ".join(allocators)} (pinned is '
                 'benchmark_model.py\'s default; --default-allocator leaves '
                 'glibc\'s settings as they are).')
    return '\n'.join(lines) + '\n'


def main(args):
    os.makedirs(args.out, exist_ok=True)
    runs = []
    for size in args.sizes:
        for batch in args.batches:
            if f'{size}:{batch}' in args.skip:
                continue
            for backbone in args.backbones:
                path = osp.join(args.out,
                                run_name(backbone, size, batch) + '.json')
                if not args.table_only:
                    path = measure(args, backbone, size, batch)
                if path and osp.isfile(path):
                    with open(path) as f:
                        runs.append((backbone, json.load(f)))
    text = table(runs)
    with open(osp.join(args.out, 'table.md'), 'w') as f:
        f.write(text)
    print(text)
    return text


if __name__ == '__main__':
    os.chdir(REPO)
    main(parse_args())
