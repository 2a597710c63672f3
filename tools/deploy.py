"""Convert a trained mmlgc model for deployment.

    python tools/deploy.py CONFIG CKPT OUT [--cfg-options k=v ...]

Writes ``OUT`` (a checkpoint whose eval forward runs the learned groups
through mmlgc's ops, BN folded into the convs) and ``OUT`` with ``.py``
instead of its extension (the config with ``deploy=True`` on the converted
modules), so that

    python tools/test.py OUT.py OUT

evaluates the deployed model. Both files are written atomically.

``--plan-sizes 800x1216 ...`` measures the deployed layers' execution plans
(:mod:`mmlgc.ops.plans`: per layer, the fastest exact execution on this CPU)
on random inputs of those sizes right away and caches them on disk
(``$MMLGC_PLAN_CACHE``), so that ``tools/test.py`` and
``tools/analysis/benchmark_model.py`` on this machine start with them;
without it each layer measures at its first call. ``$MMLGC_CONV_PLAN``
forces one execution everywhere (e.g. ``kernel``).
"""
import argparse
import os.path as osp

import torch
from mmengine.config import DictAction
from mmengine.runner import load_checkpoint, save_checkpoint

import mmlgc  # noqa: F401  (registers modules, applies the stack fixes)
from mmlgc.deploy import deploy_model, mark_deploy_in_config
from mmlgc.ops import plans
from mmlgc.utils.checkpoint_checks import enable_checkpoint_checks
from mmlgc.utils.config import build_model, load_config
from mmlgc.utils.io import atomic_write


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config the checkpoint was trained '
                        'with')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('out', help='deployed checkpoint to write (.pth)')
    parser.add_argument('--plan-sizes', nargs='+', metavar='HxW',
                        help='measure and cache the execution plans at these '
                        'input sizes now (H or HxW)')
    parser.add_argument('--plan-batch', type=int, default=1,
                        help='batch size of the --plan-sizes inputs')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args()


def main():
    args = parse_args()
    # Bad checkpoints are clear errors in every mmlgc tool (not on import).
    enable_checkpoint_checks()
    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    names = deploy_model(model)
    out_cfg = mark_deploy_in_config(cfg, names)
    meta = dict(deployed_from=osp.abspath(args.checkpoint),
                deployed_modules=names)
    atomic_write(args.out, lambda tmp: save_checkpoint(
        dict(state_dict=model.state_dict(), meta=meta), tmp))
    config_path = osp.splitext(args.out)[0] + '.py'
    atomic_write(config_path, out_cfg.dump)
    print(f'deployed {", ".join(names)}: {args.out}\nconfig: {config_path}\n'
          f'evaluate: python tools/test.py {config_path} {args.out}')
    if args.plan_sizes:
        measure_plans(model, args.plan_sizes, args.plan_batch)


def measure_plans(model, sizes, batch):
    """Run the deployed features (backbone, neck) once per size on random
    inputs: every planned layer measures its candidates and caches the
    choice."""
    features = getattr(model, 'extract_feat', model)
    for size in sizes:
        h, _, w = size.partition('x')
        features(torch.randn(batch, 3, int(h), int(w or h)))
    chosen = ', '.join(f'{name} x{count}' for name, count in sorted(
        plans.chosen_counts().items()))
    print(f'execution plans ({plans.cache.path}): {chosen or "none"}')


if __name__ == '__main__':
    with torch.no_grad():
        main()
