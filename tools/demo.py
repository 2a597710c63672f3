"""The mmlgc demo on the bundled synthetic data, CPU only, through the same
command-line tools a user runs.

    python tools/demo.py                    # `make demo`: MSGC Faster R-CNN
    python tools/demo.py --all              # `make demo-all`: every method,
                                            # Faster R-CNN and RetinaNet
    python tools/demo.py --methods msgc --detectors retinanet

For each learnable grouped method M and detector D (configs named
``configs/pretrain/M_resnet18_shapes.py`` and ``configs/M_D_r18_shapes.py``):

1. ``tools/data/make_shapes.py`` (once; skipped when the data exist);
2. pretrain the dense ResNet-18 classifier (mmpretrain; once), then the M
   backbone, started from the dense weights where its config says so;
3. train the dense D baseline and the M detector (mmdet), each from its
   pretrained backbone;
4. ``tools/test.py``: COCO bbox mAP of both;
5. ``tools/analysis/get_flops.py``: the M backbone's dynamic MACs over the
   validation images, as a ratio of the dense backbone's;
6. ``tools/deploy.py`` then ``tools/test.py`` on the deployed model (its mAP
   must equal the trained model's);
7. ``tools/analysis/benchmark_model.py``: latency of dense vs masked vs
   deployed, backbone and whole detector, on the first validation image,
   the dense form being the trained dense detector of step 3.

Then one table. Runs are seeded (``--seed``); outputs go to ``--work-dir``.
Every step is a subprocess whose output streams through (progress, ETA);
a failing step stops the demo with its command line.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ALL_METHODS = ('msgc', 'dgc', 'sgcnn', 'flgc')
ALL_DETECTORS = ('faster_rcnn', 'retinanet')
DENSE_PRETRAIN = 'configs/pretrain/resnet18_shapes.py'


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--all', action='store_true',
                        help='every method with both detectors')
    parser.add_argument('--methods', nargs='+', default=['msgc'],
                        choices=ALL_METHODS)
    parser.add_argument('--detectors', nargs='+', default=['faster_rcnn'],
                        choices=ALL_DETECTORS)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data', default='data/shapes')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--det-epochs', type=int, default=2,
                        help='detector training epochs (the shapes configs '
                        'say 6; the demo trains 2 to stay under 15 minutes '
                        'on 2 cores)')
    parser.add_argument('--resume', action='store_true',
                        help='resume every training from its work dir\'s '
                        'latest checkpoint (after an interruption; finished '
                        'runs are not repeated)')
    args = parser.parse_args()
    if args.all:
        args.methods, args.detectors = list(ALL_METHODS), list(ALL_DETECTORS)
    return args


class Demo:

    def __init__(self, args):
        self.args = args
        self.timings = {}
        self.dense_checkpoints = {}  # detector -> its trained dense baseline

    def run(self, step, *command):
        """Run a repository script with this interpreter, timed."""
        print(f'\n==> [{step}] {" ".join(command)}', flush=True)
        start = time.time()
        result = subprocess.run([sys.executable, *command], cwd=REPO)
        self.timings[step] = time.time() - start
        if result.returncode != 0:
            raise SystemExit(f'demo step {step!r} failed (exit '
                             f'{result.returncode}): {" ".join(command)}')

    def work_dir(self, name):
        return osp.join(self.args.work_dir, name)

    def seed_options(self):
        return [f'randomness.seed={self.args.seed}']

    def train(self, config, init_from=None, epochs=None):
        """Train ``config`` (from the checkpoint ``init_from`` where given,
        for ``epochs`` instead of the config's); returns the last
        checkpoint."""
        name = osp.splitext(osp.basename(config))[0]
        options = self.seed_options()
        if epochs is not None:
            # The shapes detection schedule: [warm-up, cosine to the end].
            # No validation while training: tools/test.py evaluates the
            # final checkpoint next.
            options += [f'train_cfg.max_epochs={epochs}',
                        f'train_cfg.val_begin={epochs + 1}',
                        f'param_scheduler.1.end={epochs}']
        if init_from is not None:
            options += [f'model.{part}.init_cfg.checkpoint={init_from}'
                        for part in pretrained_parts(config)]
        resume = ['--resume'] if self.args.resume else []
        self.run(f'train {name}', 'tools/train.py', config, '--work-dir',
                 self.work_dir(name), *resume, '--cfg-options', *options)
        with open(osp.join(REPO, self.work_dir(name),
                           'last_checkpoint')) as f:
            return f.read().strip()

    def test(self, config, checkpoint, name):
        work_dir = self.work_dir(osp.join(name, 'test'))
        self.run(f'test {name}', 'tools/test.py', config, checkpoint,
                 '--work-dir', work_dir)
        return latest_json(osp.join(work_dir, '*', '*.json'))

    def main(self):
        args = self.args
        data = args.data
        if not (osp.isfile(osp.join(REPO, data, 'det/annotations/'
                                    'instances_val.json'))
                and osp.isfile(osp.join(REPO, data, 'cls/meta/val.txt'))):
            self.run('data', 'tools/data/make_shapes.py', '--out', data)

        dense_backbone = self.train(DENSE_PRETRAIN)
        rows = []
        dense_rows = {}
        for method in args.methods:
            pretrain = f'configs/pretrain/{method}_resnet18_shapes.py'
            backbone = self.train(
                pretrain,
                dense_backbone if starts_from_dense(pretrain) else None)
            for detector in args.detectors:
                if detector not in dense_rows:
                    dense_rows[detector] = self.dense_detector(
                        detector, dense_backbone)
                rows.append(self.method_detector(method, detector, backbone,
                                                 pretrain))
        table = summary_table(
            [dense_rows[d] for d in args.detectors] + rows,
            self.timings)
        print(table)
        with open(osp.join(REPO, args.work_dir, 'summary.md'), 'w') as f:
            f.write(table + '\n')

    def dense_detector(self, detector, dense_backbone):
        config = f'configs/{detector}_r18_shapes.py'
        name = osp.splitext(osp.basename(config))[0]
        checkpoint = self.train(config, dense_backbone, self.args.det_epochs)
        self.dense_checkpoints[detector] = checkpoint
        metrics = self.test(config, checkpoint, name)
        return dict(model=name, top1=pretrain_top1(
            self.work_dir('resnet18_shapes')), **box_map(metrics))

    def method_detector(self, method, detector, backbone, pretrain):
        config = f'configs/{method}_{detector}_r18_shapes.py'
        name = osp.splitext(osp.basename(config))[0]
        pretrain_name = osp.splitext(osp.basename(pretrain))[0]
        checkpoint = self.train(config, backbone, self.args.det_epochs)
        row = dict(model=name, top1=pretrain_top1(
            self.work_dir(pretrain_name)), **box_map(
                self.test(config, checkpoint, name)))

        flops = self.work_dir(osp.join(name, 'flops.json'))
        self.run(f'flops {name}', 'tools/analysis/get_flops.py', config,
                 '--checkpoint', checkpoint, '--num-images', '200', '--out',
                 flops)
        with open(osp.join(REPO, flops)) as f:
            row['macs_ratio'] = json.load(f)['backbone_mmlgc']['ratio'][
                'mean']

        deployed = self.work_dir(osp.join(name, 'deployed.pth'))
        self.run(f'deploy {name}', 'tools/deploy.py', config, checkpoint,
                 deployed)
        row['deployed_mAP'] = box_map(
            self.test(osp.splitext(deployed)[0] + '.py', deployed,
                      name + '_deployed'))['mAP']

        bench = self.work_dir(osp.join(name, 'benchmark.json'))
        # Against the trained dense detector: the gates-open dense form
        # passes degenerate proposals to the heads (benchmark_model.py).
        self.run(f'benchmark {name}', 'tools/analysis/benchmark_model.py',
                 '--config', config, '--checkpoint', checkpoint,
                 '--dense-checkpoint', self.dense_checkpoints[detector],
                 '--out', bench)
        with open(osp.join(REPO, bench)) as f:
            for result in json.load(f)['results']:
                row[f'speedup_{result["scope"]}'] = result['speedup'][
                    'deployed']
        return row


def pretrained_parts(config):
    """The parts of the config's model (``backbone``, and ``head`` where a
    method groups the classifier too, as SG-CNN) initialised from a
    checkpoint: the demo points them all at the one it passes in."""
    from mmengine.config import Config

    from mmlgc.utils.config import pretrained_parts as parts_of
    return parts_of(Config.fromfile(osp.join(REPO, config)))


def starts_from_dense(config):
    """Does the pretraining config initialise its backbone from a
    checkpoint (the dense one, which the demo passes in)?"""
    return 'backbone' in pretrained_parts(config)


def latest_json(pattern):
    paths = sorted(glob.glob(osp.join(REPO, pattern)), key=osp.getmtime)
    if not paths:
        raise SystemExit(f'no metrics file matches {pattern}')
    with open(paths[-1]) as f:
        return json.load(f)


def pretrain_top1(work_dir):
    """The last validation top-1 in a training run's scalar log."""
    top1 = None
    for path in sorted(glob.glob(osp.join(REPO, work_dir, '*', 'vis_data',
                                          'scalars.json')),
                       key=osp.getmtime):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                top1 = record.get('accuracy/top1', top1)
    return top1


def box_map(metrics):
    return dict(mAP=metrics['coco/bbox_mAP'],
                mAP50=metrics['coco/bbox_mAP_50'])


def summary_table(rows, timings):
    def fmt(value, spec):
        return '-' if value is None else format(value, spec)

    lines = [
        '', '# mmlgc demo (shapes, CPU)', '',
        '| model | pretrain top-1 % | bbox mAP | mAP@0.5 | backbone MACs '
        '(x dense) | deployed mAP | deployed speed-up backbone / detector |',
        '|---|---|---|---|---|---|---|'
    ]
    for row in rows:
        speed = (f'{fmt(row.get("speedup_backbone"), ".2f")}x / '
                 f'{fmt(row.get("speedup_detector"), ".2f")}x'
                 if 'speedup_backbone' in row else '-')
        lines.append(
            f'| {row["model"]} | {fmt(row.get("top1"), ".1f")} | '
            f'{fmt(row["mAP"], ".3f")} | {fmt(row["mAP50"], ".3f")} | '
            f'{fmt(row.get("macs_ratio", 1.0), ".3f")} | '
            f'{fmt(row.get("deployed_mAP"), ".3f")} | {speed} |')
    lines += ['', '| step | seconds |', '|---|---|']
    lines += [f'| {step} | {seconds:.0f} |' for step, seconds in
              timings.items()]
    lines.append(f'| total | {sum(timings.values()):.0f} |')
    return '\n'.join(lines)


if __name__ == '__main__':
    os.chdir(REPO)
    Demo(parse_args()).main()
