"""The method comparison: top-1 vs MACs vs latency of every learnable
grouped method against plain baselines at equal MACs, on the shapes
classification split, several seeds per point (docs/study.md).

    python tools/analysis/study.py --out work_dirs/study          # the grid
    python tools/analysis/study.py --out work_dirs/study --aggregate-only
    python tools/analysis/study.py --out work_dirs/study --methods dense msgc \
        --seeds 0 --budgets 0.5 --dry-run                       # list points

Grid (``--methods``, ``--budgets`` 0.3 0.5 0.7, ``--seeds`` 0 1):

* ``dense``: the dense ResNet-18 pretraining (configs/pretrain/
  resnet18_shapes.py), one per seed; every other point of that seed starts
  from its last checkpoint;
* ``finetuned``: the dense ResNet-18 trained ``--epochs`` more from its
  checkpoint, on the thin schedule: every other point has those extra
  epochs too, so this, not ``dense``, is the reference to read them against;
* ``thin``: a uniformly thinner ResNet-18 (static channel pruning,
  configs/study/resnet18_thin_shapes.py): width round(64·sqrt(budget)),
  initialised with the first channels of every dense layer;
* ``fixed``: fixed grouped 3x3 convs, G = 2 and 4 (``--groups``): FLGC's
  layers with the group assignment frozen at its random initialisation
  (assignment logits at lr 0), i.e. a grouped conv up to a channel
  permutation, group sizes as drawn;
* ``msgc`` (MAC budget target = budget), ``dgc`` (keep = budget), ``sgcnn``
  (conv/FC pruned fraction = 1 - budget), each started from the dense
  checkpoint with its own shapes pretraining config;
* ``flgc``: learnt groups, G = 2 and 4 (its MACs follow from G);
* ``random``: random static channel masks at density = budget, the static,
  unlearnt counterpart of MSGC: in every conv SG-CNN groups (the block
  convs), the filters in 4 contiguous groups (MSGC's heads), each group
  reading its own random round(budget·C) input channels, drawn once from
  the seed and kept (SG-CNN's layers with no grouping hook; they deploy to
  4 ragged groups per conv).

Budgets are what each point asks for; the table and plots use the MACs
measured by tools/analysis/get_flops.py on the validation images for
grouped backbones (mmlgc's dynamic count as a ratio of its dense count) and
mmengine's analyzer at ``--image-size`` for the plain ones (get_flops.py's
``analyzer`` count; ratio to the dense ResNet-18's). Latency: the deployed backbone's
median from tools/analysis/benchmark_model.py (``--no-latency`` skips it; a
point the tool cannot time gets none). Every training is
``tools/train.py`` in a subprocess, as a user runs it.

Resumable: a point whose ``runs/NAME/result.json`` exists is skipped; a
training that stopped keeps its work dir and resumes (``--resume``) from its
last checkpoint; finished steps (training, MACs, latency) are not repeated.
A point trained under ``--no-latency`` gets only its latency on a later run
without it: train the grid while the machine is busy, time it when quiet.
Outputs under ``--out``: ``results.json``, ``results.csv`` (one row per
run), ``table.md`` (mean ± sample std over seeds per method and budget),
``top1_vs_macs.png``, ``top1_vs_latency.png``.
"""
import argparse
import csv
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time
from collections import OrderedDict

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DENSE_CONFIG = 'configs/pretrain/resnet18_shapes.py'
THIN_CONFIG = 'configs/study/resnet18_thin_shapes.py'
METHODS = ('dense', 'finetuned', 'thin', 'fixed', 'msgc', 'dgc', 'sgcnn',
           'flgc', 'random')
# No mmlgc layer: MACs counted here. finetuned is the thin network at full
# width (budget 1).
PLAIN = ('dense', 'finetuned', 'thin')
THIN_LIKE = ('finetuned', 'thin')
METHOD_CONFIGS = {m: f'configs/pretrain/{m}_resnet18_shapes.py'
                  for m in ('msgc', 'dgc', 'sgcnn', 'flgc')}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='work_dirs/study')
    parser.add_argument('--methods', nargs='+', default=list(METHODS),
                        choices=METHODS)
    parser.add_argument('--budgets', nargs='+', type=float,
                        default=[0.3, 0.5, 0.7],
                        help='MAC budgets (x dense) for thin, msgc, dgc, '
                        'sgcnn')
    parser.add_argument('--groups', nargs='+', type=int, default=[2, 4],
                        help='G of the fixed and flgc points')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1])
    parser.add_argument('--epochs', type=int, default=2,
                        help='training epochs of every point but dense (which '
                        'trains its config\'s 2, the demo\'s pretraining): '
                        'each starts from the dense checkpoint; 2, the '
                        'length the method configs are tuned for (in 1, '
                        'MSGC lost 10 points at its budget)')
    parser.add_argument('--data', default='data/shapes',
                        help='shapes data root (written by '
                        'tools/data/make_shapes.py when missing)')
    parser.add_argument('--flops-images', type=int, default=200)
    parser.add_argument('--image-size', type=int, default=64,
                        help='classification image side (MACs of the plain '
                        'backbones)')
    parser.add_argument('--no-latency', action='store_true')
    parser.add_argument('--bench-rounds', type=int, default=5)
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra --cfg-options for every training')
    parser.add_argument('--aggregate-only', action='store_true',
                        help='only rebuild the table, CSV and plots')
    parser.add_argument('--dry-run', action='store_true',
                        help='list the grid points and exit')
    return parser.parse_args(argv)


def run_tool(*args):
    """Run a repository script with this interpreter from the repository
    root; raises on failure. (Tests replace it.)"""
    print(f'\n==> {" ".join(args)}', flush=True)
    result = subprocess.run([sys.executable, *args], cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f'failed (exit {result.returncode}): '
                           f'{" ".join(args)}')


def thin_width(budget):
    return int(round(64 * math.sqrt(budget)))


def grid(args):
    """The grid points, dense first (the others of a seed start from it):
    dicts of name, method, budget (asked: MACs fraction or G), seed,
    config, options (``--cfg-options``)."""
    points = []
    for seed in args.seeds:
        points.append(dict(method='dense', budget=1.0, seed=seed,
                           config=DENSE_CONFIG, options=[]))
    for method in args.methods:
        if method == 'dense':
            continue
        for seed in args.seeds:
            if method in ('fixed', 'flgc'):
                for g in args.groups:
                    options = [f'model.backbone.num_groups={g}']
                    if method == 'fixed':
                        options.append('optim_wrapper.paramwise_cfg.'
                                       'custom_keys.group_logits.lr_mult=0.')
                    points.append(dict(method=method, budget=f'G{g}',
                                       seed=seed,
                                       config=METHOD_CONFIGS['flgc'],
                                       options=options))
                continue
            for budget in [1.0] if method == 'finetuned' else args.budgets:
                if method in THIN_LIKE:
                    w = thin_width(budget)
                    options = [f'model.backbone.stem_channels={w}',
                               f'model.backbone.base_channels={w}',
                               f'model.head.in_channels={8 * w}']
                    config = THIN_CONFIG
                elif method == 'msgc':
                    options = [f'custom_hooks.0.target={budget}']
                    config = METHOD_CONFIGS[method]
                elif method == 'dgc':
                    options = [f'model.backbone.keep={budget}']
                    config = METHOD_CONFIGS[method]
                elif method == 'random':
                    # SG-CNN's layers, masks from the init checkpoint
                    # (random_mask_init), never regrouped
                    options = ['custom_hooks=[]']
                    config = METHOD_CONFIGS['sgcnn']
                else:  # sgcnn
                    pruned = round(1 - budget, 3)
                    options = [f'custom_hooks.0.conv_ratio={pruned}',
                               f'custom_hooks.0.fc_ratio={pruned}']
                    config = METHOD_CONFIGS[method]
                points.append(dict(method=method, budget=budget, seed=seed,
                                   config=config, options=options))
    for p in points:
        if p['method'] != 'dense':
            p['options'] = schedule_options(p, args.epochs) + p['options']
    if 'dense' not in args.methods:
        # The dense runs are still trained (the others start from them) but
        # only reported when asked for.
        for p in points:
            p['report'] = p['method'] != 'dense'
    for p in points:
        p.setdefault('report', True)
        budget = (p['budget'] if isinstance(p['budget'], str) else
                  f'b{p["budget"]:g}')
        p['name'] = f'{p["method"]}_{budget}_s{p["seed"]}'
    return points


def schedule_options(point, epochs):
    """``--cfg-options`` training the point for ``epochs``: the method
    configs' cosine over all epochs (SG-CNN's grouping steps every 20·epochs
    iterations, so that its last step comes in the first ~2/3), the thin
    one's warm-up then cosine over the last epoch (or all, for one)."""
    options = [f'train_cfg.max_epochs={epochs}',
               f'train_cfg.val_interval={epochs}']
    if point['method'] in THIN_LIKE:
        options += [f'param_scheduler.1.begin={max(epochs - 1, 0)}',
                    f'param_scheduler.1.end={epochs}']
    else:
        options.append(f'param_scheduler.0.end={epochs}')
    if point['method'] == 'sgcnn':
        options.append(f'custom_hooks.0.interval={20 * epochs}')
    return options


def data_options(data):
    root = osp.join(data, 'cls') + '/'
    return [f'{split}_dataloader.dataset.data_root={root}'
            for split in ('train', 'val', 'test')]


def pretrained_parts(config):
    """The parts (backbone, head) a config initialises from a checkpoint."""
    from mmengine.config import Config

    from mmlgc.utils.config import pretrained_parts as parts_of
    return parts_of(Config.fromfile(osp.join(REPO, config)))


def build_model(point):
    """The point's classifier, its options applied, built as mmlgc's tools
    build models (:func:`mmlgc.utils.config.build_model`)."""
    from mmengine.config import DictAction

    import mmlgc  # noqa: F401  (registers mmlgc's modules)
    from mmlgc.utils.config import build_model as build
    from mmlgc.utils.config import load_config
    options = {k: DictAction._parse_iterable(v) for k, v in (
        o.split('=', 1) for o in point['options'])}
    return build(load_config(osp.join(REPO, point['config']), options))


def plain_backbone_macs(point, size):
    """mmengine's analyzer count of a plain backbone at ``size``² (what
    tools/analysis/get_flops.py reports as ``analyzer.backbone_flops``; it
    refuses models without mmlgc layers)."""
    from mmengine.analysis import get_model_complexity_info
    model = build_model(point).eval()
    return get_model_complexity_info(model.backbone, (3, size, size),
                                     show_table=False,
                                     show_arch=False)['flops']


def plain_latency(point, size, rounds):
    """A plain backbone's median time at batch 1 and ``size``², BN folded,
    interleaved with the dense ResNet-18's (benchmark_model.py's forms,
    in-process: that tool times only models with mmlgc layers). The
    weights do not matter to the time: the models are built fresh."""
    import torch
    from mmcv.cnn import fuse_conv_bn

    from mmlgc.ops.timing import time_interleaved
    x = torch.randn(1, 3, size, size)
    dense = dict(config=DENSE_CONFIG, options=[])
    backbones = {name: fuse_conv_bn(build_model(p).eval().backbone)
                 for name, p in (('plain', point), ('dense', dense))}
    with torch.no_grad():
        timings = time_interleaved(
            {name: (lambda m=m: m(x)) for name, m in backbones.items()},
            rounds)
    return dict(latency_ms=timings['plain'].median,
                dense_latency_ms=timings['dense'].median)


def thin_init(dense_ckpt, point, path):
    """The dense checkpoint cut to the thin model's shapes: the first
    channels of every tensor (a consistent choice across residual adds)."""
    import torch
    shapes = {k: v.shape for k, v in build_model(point).state_dict()
              .items()}
    dense = torch.load(dense_ckpt, map_location='cpu',
                       weights_only=False)['state_dict']
    state = {k: dense[k][tuple(slice(0, n) for n in shape)].clone()
             for k, shape in shapes.items()}
    torch.save(dict(state_dict=state), path)


RANDOM_MASK_GROUPS = 4


def random_connectivity(out_channels, in_channels, density, generator,
                        groups=RANDOM_MASK_GROUPS):
    """An ``[O, C]`` 0/1 mask: the filters in ``groups`` contiguous groups,
    each reading its own random ``max(1, round(density·C))`` channels."""
    import torch
    mask = torch.zeros(out_channels, in_channels)
    keep = max(1, int(round(density * in_channels)))
    bounds = [round(i * out_channels / groups) for i in range(groups + 1)]
    for begin, end in zip(bounds[:-1], bounds[1:]):
        channels = torch.randperm(in_channels, generator=generator)[:keep]
        mask[begin:end, channels] = 1.0
    return mask


def random_mask_init(dense_ckpt, point, path):
    """The dense checkpoint plus a random static mask (and its grouped
    ratio) for every self-grouped conv of the point's SG-CNN backbone,
    drawn from the point's seed."""
    import torch
    from mmlgc.layers.self_grouping import SelfGroupedConv2d
    dense = torch.load(dense_ckpt, map_location='cpu',
                       weights_only=False)['state_dict']
    generator = torch.Generator().manual_seed(point['seed'])
    state = dict(dense)
    for name, module in build_model(point).backbone.named_modules():
        if isinstance(module, SelfGroupedConv2d):
            mask = random_connectivity(module.out_channels,
                                       module.in_channels, point['budget'],
                                       generator)
            state[f'backbone.{name}.mask'] = mask
            state[f'backbone.{name}.grouped_ratio'] = torch.tensor(
                1.0 - float(mask.mean()))
    torch.save(dict(state_dict=state), path)


def last_top1(work_dir):
    """The last validation top-1 in a training run's scalar logs."""
    top1 = None
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json')),
                       key=osp.getmtime):
        with open(path) as f:
            for line in f:
                top1 = json.loads(line).get('accuracy/top1', top1)
    return top1


def load_json(path):
    with open(path) as f:
        return json.load(f)


def dump_json(obj, path):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


class Study:

    def __init__(self, args):
        self.args = args
        self.out = osp.join(REPO, args.out)

    def run_dir(self, point):
        return osp.join(self.out, 'runs', point['name'])

    def result_path(self, point):
        return osp.join(self.run_dir(point), 'result.json')

    def dense_result(self, seed):
        return load_json(osp.join(self.out, 'runs', f'dense_b1_s{seed}',
                                  'result.json'))

    def train(self, point):
        """Train (or resume) the point; returns checkpoint and top-1."""
        work_dir = self.run_dir(point)
        done = osp.join(work_dir, 'train.json')
        if osp.isfile(done):
            return load_json(done)
        options = [f'randomness.seed={point["seed"]}',
                   *data_options(self.args.data), *point['options']]
        if point['method'] != 'dense':
            dense_ckpt = self.dense_result(point['seed'])['checkpoint']
            if point['method'] in (*THIN_LIKE, 'random'):
                init = osp.join(work_dir, 'init.pth')
                if not osp.isfile(init):
                    make_init = (thin_init if point['method'] in THIN_LIKE
                                 else random_mask_init)
                    make_init(dense_ckpt, point, init)
                options += [f'model.{part}.init_cfg.{key}={value}'
                            for part in ('backbone', 'head')
                            for key, value in (('type', 'Pretrained'),
                                               ('checkpoint', init),
                                               ('prefix', part + '.'))]
            else:
                options += [f'model.{part}.init_cfg.checkpoint={dense_ckpt}'
                            for part in pretrained_parts(point['config'])]
        resume = (['--resume'] if osp.isfile(
            osp.join(work_dir, 'last_checkpoint')) else [])
        start = time.time()
        run_tool('tools/train.py', point['config'], '--work-dir', work_dir,
                 *resume, '--cfg-options', *options, *self.args.cfg_options)
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
        info = dict(checkpoint=checkpoint, top1=last_top1(work_dir),
                    train_seconds=time.time() - start, resumed=bool(resume),
                    options=options + list(self.args.cfg_options))
        dump_json(info, done)
        return info

    def macs(self, point, checkpoint):
        path = osp.join(self.run_dir(point), 'flops.json')
        if point['method'] in PLAIN and not osp.isfile(path):
            dump_json(dict(analyzer=dict(backbone_flops=plain_backbone_macs(
                point, self.args.image_size))), path)
        if not osp.isfile(path):
            run_tool('tools/analysis/get_flops.py', point['config'],
                     '--checkpoint', checkpoint, '--num-images',
                     str(self.args.flops_images), '--out', path,
                     '--cfg-options', *data_options(self.args.data),
                     *point['options'])
        flops = load_json(path)
        analyzer = flops['analyzer']['backbone_flops']
        mmlgc = flops.get('backbone_mmlgc') or {}
        if point['method'] == 'dense':
            ratio = 1.0
        elif mmlgc.get('dense'):
            ratio = mmlgc['ratio']['mean']
        else:
            ratio = analyzer / self.dense_result(
                point['seed'])['backbone_macs_analyzer']
        return dict(macs_ratio=ratio, backbone_macs_analyzer=analyzer)

    def latency(self, point, checkpoint):
        if self.args.no_latency:
            return dict(latency_ms=None, dense_latency_ms=None)
        path = osp.join(self.run_dir(point), 'benchmark.json')
        if point['method'] in THIN_LIKE:
            if not osp.isfile(path):
                dump_json(plain_latency(point, self.args.image_size,
                                        self.args.bench_rounds), path)
            return load_json(path)
        if not osp.isfile(path):
            try:
                run_tool('tools/analysis/benchmark_model.py', '--config',
                         point['config'], '--checkpoint', checkpoint,
                         '--no-detector', '--rounds',
                         str(self.args.bench_rounds), '--out', path,
                         '--cfg-options', *data_options(self.args.data),
                         *point['options'])
            except RuntimeError as e:  # e.g. a plain model: no grouped form
                print(f'study: no latency for {point["name"]}: {e}')
                return dict(latency_ms=None, dense_latency_ms=None)
        for row in load_json(path)['results']:
            if row['scope'] == 'backbone':
                return dict(latency_ms=row['ms']['deployed'],
                            dense_latency_ms=row['ms']['dense'])
        return dict(latency_ms=None, dense_latency_ms=None)

    def run_point(self, point):
        path = self.result_path(point)
        if osp.isfile(path):
            result = load_json(path)
            if (self.args.no_latency or point['method'] == 'dense'
                    or result.get('latency_ms') is not None):
                print(f'study: {point["name"]} done, skipped', flush=True)
                return result
            # trained under --no-latency: only the latency is missing
            result.update(self.latency(point, result['checkpoint']))
            dump_json(result, path)
            return result
        os.makedirs(self.run_dir(point), exist_ok=True)
        start = time.time()
        trained = self.train(point)
        result = dict(name=point['name'], method=point['method'],
                      budget=point['budget'], seed=point['seed'],
                      config=point['config'], report=point['report'],
                      checkpoint=trained['checkpoint'], top1=trained['top1'],
                      train_seconds=trained['train_seconds'])
        result.update(self.macs(point, trained['checkpoint']))
        result.update(self.latency(point, trained['checkpoint']))
        result['seconds'] = time.time() - start
        dump_json(result, path)
        return result

    def main(self):
        points = grid(self.args)
        if self.args.dry_run:
            for p in points:
                print(p['name'], p['config'], ' '.join(p['options']))
            print(f'{len(points)} points')
            return []
        if not self.args.aggregate_only:
            data = osp.join(REPO, self.args.data)
            if not osp.isfile(osp.join(data, 'cls', 'meta', 'val.txt')):
                run_tool('tools/data/make_shapes.py', '--out',
                         self.args.data)
            for i, point in enumerate(points):
                print(f'study: point {i + 1}/{len(points)}: {point["name"]}',
                      flush=True)
                self.run_point(point)
        results = [load_json(self.result_path(p)) for p in points
                   if osp.isfile(self.result_path(p))]
        write_outputs(results, self.out)
        return results


def mean_spread(values):
    """Mean and sample standard deviation (0 for one value) of the values
    that are not None; (None, None) when there are none."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean)**2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def aggregate(results):
    """One row per (method, budget) of the reported runs, in grid order:
    n seeds, mean and std of top-1, MACs ratio and latency."""
    groups = OrderedDict()
    for r in results:
        if r.get('report', True):
            groups.setdefault((r['method'], str(r['budget'])), []).append(r)
    # The benchmark tool times grouped models against their dense
    # counterpart (a ResNet-18, BN folded): the dense runs, which it cannot
    # time on their own, get the median of those dense timings.
    dense_ms = sorted(r['dense_latency_ms'] for r in results
                      if r.get('dense_latency_ms') is not None)
    rows = []
    for (method, budget), runs in groups.items():
        if method == 'dense' and dense_ms:
            runs = [dict(r, latency_ms=r.get('latency_ms') or
                         dense_ms[len(dense_ms) // 2]) for r in runs]
        row = dict(method=method, budget=budget, n=len(runs),
                   seeds=[r['seed'] for r in runs])
        for key in ('top1', 'macs_ratio', 'latency_ms'):
            row[key], row[key + '_std'] = mean_spread(
                [r.get(key) for r in runs])
        rows.append(row)
    return rows


def fmt(mean, std, spec):
    if mean is None:
        return '-'
    return f'{mean:{spec}} ± {std:{spec}}'


def markdown_table(rows):
    lines = ['| method | budget | seeds | top-1 % | backbone MACs (x dense) '
             '| deployed backbone latency ms |', '|---|---|---|---|---|---|']
    for row in rows:
        lines.append(
            f'| {row["method"]} | {row["budget"]} | {row["n"]} | '
            f'{fmt(row["top1"], row["top1_std"], ".1f")} | '
            f'{fmt(row["macs_ratio"], row["macs_ratio_std"], ".3f")} | '
            f'{fmt(row["latency_ms"], row["latency_ms_std"], ".1f")} |')
    lines.append('')
    lines.append('Mean ± sample standard deviation over the seeds; MACs '
                 'measured on the validation images (tools/analysis/'
                 'get_flops.py), latency the deployed backbone\'s median '
                 '(tools/analysis/benchmark_model.py, batch 1).')
    return '\n'.join(lines) + '\n'


def plot(rows, key, xlabel, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    methods = list(OrderedDict.fromkeys(r['method'] for r in rows))
    drawn = False
    for method in methods:
        pts = sorted((r[key], r['top1'], r[key + '_std'] or 0,
                      r['top1_std'] or 0) for r in rows
                     if r['method'] == method and r[key] is not None
                     and r['top1'] is not None)
        if not pts:
            continue
        xs, ys, xerr, yerr = zip(*pts)
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, marker='o', capsize=3,
                    label=method)
        drawn = True
    ax.set_xlabel(xlabel)
    ax.set_ylabel('top-1 % (shapes val)')
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(results, out):
    os.makedirs(out, exist_ok=True)
    rows = aggregate(results)
    dump_json(dict(runs=results, aggregate=rows),
              osp.join(out, 'results.json'))
    keys = ['name', 'method', 'budget', 'seed', 'top1', 'macs_ratio',
            'latency_ms', 'dense_latency_ms', 'train_seconds', 'seconds',
            'checkpoint']
    with open(osp.join(out, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, keys, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(results)
    with open(osp.join(out, 'table.md'), 'w') as f:
        f.write(markdown_table(rows))
    plot(rows, 'macs_ratio', 'backbone MACs (x dense)',
         osp.join(out, 'top1_vs_macs.png'))
    plot(rows, 'latency_ms', 'deployed backbone latency (ms, batch 1)',
         osp.join(out, 'top1_vs_latency.png'))
    return rows


if __name__ == '__main__':
    os.chdir(REPO)
    Study(parse_args()).main()
