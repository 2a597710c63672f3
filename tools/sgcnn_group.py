"""Self-group a trained checkpoint in one shot (SG-CNN, no fine-tuning).

    python tools/sgcnn_group.py CONFIG CKPT OUT [--ratio 0.6] \
        [--fc-ratio R] [--groups 16] [--step S] [--seed 0] [--shape 224] \
        [--cfg-options k=v ...]

``CONFIG`` is an SG-CNN config (``type='mmlgc.SGCNNResNet'`` backbone, and
``mmlgc.SelfGroupedLinearClsHead`` for a classifier whose FC is grouped too);
``CKPT`` a checkpoint of that model, grouped or still dense (e.g. the dense
classifier the config starts from: the same keys but the masks). Every
self-grouped conv is grouped to the pruned fraction ``--ratio``, every
self-grouped FC to ``--fc-ratio`` (default: ``--ratio``; 0 leaves it), with
``--groups`` clusters per layer. ``--step`` groups progressively (``step``,
``2·step``, ... re-clustering each time, as
:class:`mmlgc.engine.SelfGroupingHook` does, without fine-tuning in
between). ``OUT`` gets the model's state dict with the masks, loadable by
the same config (``load_from``, or ``init_cfg=Pretrained`` with prefix
``backbone.`` for a detector); ``--shape`` prints the SG-CNN reference
counter's MACs/params at that input size (224: the paper's convention).
"""
import argparse
import os.path as osp

import torch
from mmengine.config import DictAction
from mmengine.runner import save_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint

import mmlgc  # noqa: F401  (registers modules, applies the stack fixes)
from mmlgc.engine import SelfGroupingHook
from mmlgc.layers.self_grouping import (pruned_fractions, reference_complexity,
                                        self_grouped_layers)
from mmlgc.utils.checkpoint_checks import enable_checkpoint_checks
from mmlgc.utils.config import build_model, load_config
from mmlgc.utils.io import atomic_write


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='an SG-CNN config')
    parser.add_argument('checkpoint', help='its trained (dense or grouped) '
                        'checkpoint')
    parser.add_argument('out', help='grouped checkpoint to write (.pth)')
    parser.add_argument('--ratio', type=float, default=0.6,
                        help='pruned fraction of every grouped conv')
    parser.add_argument('--fc-ratio', type=float, default=None,
                        help='pruned fraction of every grouped FC (default: '
                        '--ratio; 0: not grouped)')
    parser.add_argument('--groups', type=int, default=16,
                        help='clusters per layer')
    parser.add_argument('--step', type=float, default=None,
                        help='group progressively in steps of this fraction '
                        '(default: one step)')
    parser.add_argument('--seed', type=int, default=0, help='k-means seed')
    parser.add_argument('--shape', type=int, nargs='+',
                        help='print the SG-CNN reference MACs/params at this '
                        'input size (H [W])')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args()


def load_weights(model, path):
    """Load ``path`` into ``model``; a dense checkpoint of the same network
    fills only the weights (the masks stay dense). Exits with a clear
    message when the checkpoint is of another model."""
    checkpoint = _load_checkpoint(path, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys]
    if missing or result.unexpected_keys:
        raise SystemExit(
            f'{path} does not match the model of the config: '
            f'{len(missing)} missing keys (e.g. {missing[:3]}), '
            f'{len(result.unexpected_keys)} unexpected (e.g. '
            f'{result.unexpected_keys[:3]}). Pass the SG-CNN config the '
            'checkpoint was trained with (or its dense counterpart\'s '
            'checkpoint, with the same key prefixes).')


def main():
    args = parse_args()
    # Bad checkpoints are clear errors in every mmlgc tool (not on import).
    enable_checkpoint_checks()
    for path in (args.config, args.checkpoint):
        if not osp.isfile(path):
            raise SystemExit(f'not found: {path}')
    fc_ratio = args.ratio if args.fc_ratio is None else args.fc_ratio
    step = args.step or max(args.ratio, fc_ratio)
    try:
        hook = SelfGroupingHook(args.ratio, fc_ratio, step, args.groups,
                                scheme='global', seed=args.seed)
    except ValueError as error:
        raise SystemExit(f'invalid grouping arguments: {error}')
    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg)
    layers = list(self_grouped_layers(model))
    if not layers:
        raise SystemExit(
            f'the model of {args.config} has no self-grouped layer: use an '
            "SG-CNN config (backbone type='mmlgc.SGCNNResNet')")
    load_weights(model, args.checkpoint)
    model.eval()
    for stage in range(1, len(hook.stages) + 1):
        hook.apply_stage(model, stage)
    pruned = pruned_fractions(model)
    meta = dict(sgcnn=dict(
        grouped_from=osp.abspath(args.checkpoint), conv_ratio=args.ratio,
        fc_ratio=fc_ratio, groups=args.groups, stages=hook.stages,
        seed=args.seed, pruned=pruned))
    atomic_write(args.out, lambda tmp: save_checkpoint(
        dict(state_dict=model.state_dict(), meta=meta), tmp))
    print(f'grouped {len(layers)} layers in {len(hook.stages)} step(s): ' +
          ', '.join(f'{k} {v:.1%} pruned' for k, v in pruned.items()) +
          f'\nwrote {args.out}')
    if args.shape:
        h, w = (args.shape * 2)[:2]
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            if hasattr(model, 'head') and hasattr(model.head, 'fc'):
                scope = 'classifier'
                counts = reference_complexity(model, x, mode='tensor')
            else:
                scope = 'backbone'
                counts = reference_complexity(model.backbone, x)
        print(f'SG-CNN reference counter ({scope}, {h}x{w}): '
              f'{counts["macs"] / 1e9:.3f} G MACs, '
              f'{counts["params"] / 1e6:.3f} M params')


if __name__ == '__main__':
    main()
