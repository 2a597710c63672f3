"""Plots of what a learnable grouped model learnt: group topologies, layer
densities, per-image MACs.

    python tools/analysis/visualize_groups.py CONFIG CKPT --out-dir DIR \
        [--num-images N] [--examples K] [--cfg-options k=v ...]

Runs the model (whole detector or classifier, ``mode='tensor'``) in eval on
the first ``N`` images of the config's test set (pipeline as in testing) and
writes to ``DIR``:

* ``topology_<module>.png``: per grouped layer, which input channels (x)
  each group (y) reads, as the fraction of the images in which it reads
  them (the MSGC paper's interpretability figures). Dynamic layers: MSGC
  masks (``mask<i>`` of a block gates its ``conv<i>``; MobileNetV2's
  ``mask1`` the projection; a neck conv's ``mask`` the conv itself), DGC
  heads (channels kept by the top-k or DGC-G threshold gate). Static layers
  (SG-CNN, FLGC: anything exposing ``connection_mask()``), in
  ``topology_<module>_static.png``: filters (y, grouped by identical input
  sets) by input channels (ordered by the first group reading them, so
  disjoint groups are diagonal blocks), 0/1.
* ``density.png``: per grouped layer, the mean fraction of (group, input
  channel) pairs read, beside its target where the method has one (DGC's
  ``keep``), and per reporting layer its MACs over dense with the config's
  MAC budget target (``MACBudgetHook``'s ``target``).
* ``macs_hist.png``: histogram of the per-image MACs of the grouped parts
  (mmlgc's records, :mod:`mmlgc.complexity`), dense and target marked.
* ``examples.png``: the cheapest, a median and the most expensive images
  with the MACs they received, beside their per-stage MAC ratios.
* ``groups.json``: the numbers behind the plots.
"""
import argparse
import json
import os
import os.path as osp
from collections import OrderedDict, defaultdict
from itertools import islice

import matplotlib

matplotlib.use('Agg')  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402

import mmlgc  # noqa: F401,E402  (registers modules, applies the stack fixes)
from mmlgc.complexity import (clear_costs, collect_costs,  # noqa: E402
                              stage_ratios)
from mmlgc.layers import DGCConv, MaskGenerator  # noqa: E402
from mmlgc.utils import checkpoint_checks  # noqa: E402
from mmlgc.utils.config import build_model, load_config  # noqa: E402
from mmlgc.utils.inputs import forward_all, test_set_batches  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--num-images', type=int, default=50)
    parser.add_argument('--examples', type=int, default=4,
                        help='images shown with their MACs (>= 2)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


class GroupRecorder:
    """Forward hooks keeping, per dynamic grouped layer, the sum over images
    of its binary ``[G, C]`` read mask and each image's density."""

    def __init__(self, model: torch.nn.Module):
        self.read = OrderedDict()  # layer -> summed [G, C] masks
        self.density = defaultdict(list)  # layer -> per-image densities
        self.target = {}  # layer -> target density, where defined
        self.images = 0
        self._handles = []
        for name, module in model.named_modules():
            if isinstance(module, MaskGenerator):
                self._hook(module, _mask_name(name), lambda m, out: out)
            elif isinstance(module, DGCConv):
                self.target[name] = module.keep
                self._hook(module.saliency_generator, name,
                           _dgc_kept(module))

    def _hook(self, module, name, to_mask):

        def record(module, args, output):
            mask = (to_mask(module, output).detach() != 0).double().cpu()
            if name in self.read:
                self.read[name] += mask.sum(0)
            else:
                self.read[name] = mask.sum(0)
            self.density[name] += mask.flatten(1).mean(1).tolist()

        self._handles.append(module.register_forward_hook(record))

    def remove(self):
        for handle in self._handles:
            handle.remove()


def _mask_name(generator: str) -> str:
    """``backbone.layer1.0.mask_generator2`` -> ``backbone.layer1.0.mask2``;
    a self-gated neck conv's ``...conv.mask_generator`` -> ``...conv``."""
    if generator.endswith('.mask_generator'):
        return generator[:-len('.mask_generator')]
    return generator.replace('.mask_generator', '.mask')


def _dgc_kept(layer: DGCConv):
    """Saliency ``[N, G, C]`` -> what ``layer``'s gate keeps (its ``k`` or
    DGC-G threshold at this forward)."""

    def kept(module, saliency):
        if layer.mode == 'global':
            return layer.gate.threshold(saliency, float(layer.threshold))
        return layer.gate(saliency, layer.k)

    return kept


def static_topologies(model: torch.nn.Module) -> OrderedDict:
    """``{layer: [O, C] 0/1}`` of every layer with a static
    ``connection_mask()``, filters sorted so identical input sets (groups)
    are contiguous, and input channels by the first filter reading them, so
    disjoint groups show as diagonal blocks."""
    found = OrderedDict()
    for name, module in model.named_modules():
        if not callable(getattr(module, 'connection_mask', None)):
            continue
        try:
            mask = module.connection_mask().detach().cpu().double()
        except NotImplementedError:
            continue
        _, group = torch.unique(mask != 0, dim=0, return_inverse=True)
        mask = mask[group.argsort(stable=True)]
        read = mask != 0
        first = torch.where(read.any(0), read.double().argmax(0),
                            mask.shape[0])
        found[name] = mask[:, first.argsort(stable=True)]
    return found


def budget_target(cfg):
    """``target`` of the config's ``MACBudgetHook`` (None without one)."""
    for hook in cfg.get('custom_hooks', []) or []:
        if str(hook.get('type', '')).split('.')[-1] == 'MACBudgetHook':
            return hook.get('target')
    return None


def short(name: str) -> str:
    return name[len('backbone.'):] if name.startswith('backbone.') else name


def plot_topologies(topologies: dict, path: str, title: str,
                    ylabel: str) -> None:
    """One heatmap per layer, in a grid."""
    names = list(topologies)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 1.9 * rows),
                             squeeze=False)
    image = None
    for ax, name in zip(axes.flat, names):
        data = topologies[name]
        image = ax.imshow(data, aspect='auto', interpolation='nearest',
                          cmap='viridis', vmin=0, vmax=1)
        ax.set_title(f'{short(name)}  ({data.mean():.2f})', fontsize=7)
        ax.set_xlabel(f'input channel ({data.shape[1]})', fontsize=6)
        ax.set_ylabel(f'{ylabel} ({data.shape[0]})', fontsize=6)
        ax.tick_params(labelsize=5)
        if data.shape[0] <= 8:
            ax.set_yticks(range(data.shape[0]))
    for ax in axes.flat[len(names):]:
        ax.axis('off')
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 0.97))
    cax = fig.add_axes((0.945, 0.1, 0.012, 0.8))
    fig.colorbar(image, cax=cax).ax.tick_params(labelsize=6)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_density(density: dict, targets: dict, layer_ratio: dict,
                 budget, path: str) -> None:
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(max(6, 0.22 * max(len(density), len(layer_ratio))),
                       6))
    names = list(density)
    x = np.arange(len(names))
    top.bar(x, [density[n] for n in names], color='tab:blue',
            label='density (pairs read)')
    with_target = [i for i, n in enumerate(names) if n in targets]
    if with_target:
        top.scatter(with_target, [targets[names[i]] for i in with_target],
                    marker='_', s=120, color='tab:red', label='target (keep)')
    top.set_xticks(x, [short(n) for n in names], rotation=90, fontsize=6)
    top.set_ylim(0, 1.05)
    top.set_ylabel('fraction read')
    top.set_title('grouped layers: mean density over images', fontsize=9)
    top.legend(fontsize=7, loc='best')
    names = list(layer_ratio)
    x = np.arange(len(names))
    bottom.bar(x, [layer_ratio[n] for n in names], color='tab:green',
               label='MACs / dense')
    if budget is not None:
        bottom.axhline(budget, color='tab:red', linestyle='--',
                       label=f'budget target {budget:g} (whole)')
    bottom.set_xticks(x, [short(n) or 'stem' for n in names], rotation=90,
                      fontsize=6)
    bottom.set_ylabel('MACs / dense')
    bottom.set_title('reporting layers: mean MACs over dense', fontsize=9)
    bottom.legend(fontsize=7, loc='best')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_histogram(per_image: list, dense: float, budget, path: str) -> None:
    values = np.array(per_image) / 1e9
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=min(30, max(5, len(values) // 3)),
            color='tab:blue')
    ax.axvline(values.mean(), color='k', linestyle='-',
               label=f'mean {values.mean():.3f} G '
               f'({values.mean() * 1e9 / dense:.3f}x dense)')
    ax.axvline(dense / 1e9, color='tab:gray', linestyle=':',
               label=f'dense {dense / 1e9:.3f} G')
    if budget is not None:
        ax.axvline(budget * dense / 1e9, color='tab:red', linestyle='--',
                   label=f'budget target {budget:g}')
    ax.set_xlabel('GMACs per image (grouped parts, mmlgc records)')
    ax.set_ylabel('images')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def pick_examples(per_image: list, count: int) -> list:
    """Indices of the cheapest, evenly spaced middle and the most expensive
    images."""
    order = np.argsort(per_image, kind='stable')
    count = max(2, min(count, len(order)))
    picks = np.linspace(0, len(order) - 1, count).round().astype(int)
    return [int(order[i]) for i in dict.fromkeys(picks)]


def plot_examples(examples: list, dense: float, path: str) -> None:
    """``examples``: (image path, MACs, {stage: ratio})."""
    import mmcv
    fig, axes = plt.subplots(len(examples), 2, figsize=(6.4,
                                                        2.1 * len(examples)),
                             squeeze=False,
                             gridspec_kw=dict(width_ratios=(1, 1.4)))
    for (image, macs, stages), (left, right) in zip(examples, axes):
        left.imshow(mmcv.imread(image, channel_order='rgb'))
        left.set_title(f'{osp.basename(image)}: {macs / 1e9:.3f} GMACs '
                       f'({macs / dense:.3f}x)', fontsize=7)
        left.axis('off')
        names = list(stages)
        right.barh(np.arange(len(names)), [stages[n] for n in names],
                   color='tab:green')
        right.set_yticks(np.arange(len(names)), names, fontsize=6)
        right.invert_yaxis()
        right.set_xlim(0, 1.1)
        right.tick_params(labelsize=6)
        right.set_xlabel('MACs / dense per stage', fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=64)  # photos compress poorly: keep it small
    plt.close(fig)


def main():
    args = parse_args()
    # Bad checkpoints are clear errors in every mmlgc tool (not on import).
    checkpoint_checks.enable_checkpoint_checks()
    cfg = load_config(args.config, args.cfg_options)
    model_cfg = cfg.model.copy()
    model_cfg.backbone.pop('init_cfg', None)
    model = build_model(cfg, model_cfg)
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()

    recorder = GroupRecorder(model)
    per_image, stages, images = [], [], []
    layer_dense, layer_dynamic = OrderedDict(), defaultdict(float)
    dense = None
    with torch.no_grad():
        for data in islice(test_set_batches(cfg, model), args.num_images):
            clear_costs(model)
            forward_all(model, data)
            costs = collect_costs(model)
            dense = costs.dense
            per_image.append(float(costs.dynamic.sum()))
            stages.append(
                {k: float(v) for k, v in stage_ratios(costs).items()})
            images.append(data['data_samples'][0].img_path)
            for name, record in costs.per_layer.items():
                layer_dense[name] = record.dense
                layer_dynamic[name] += float(record.dynamic.sum())
    recorder.remove()
    if not per_image:
        raise RuntimeError(f'no images in the test set of {args.config}')
    count = len(per_image)

    dynamic = OrderedDict(
        (name, (read / count).numpy()) for name, read in recorder.read.items())
    static = OrderedDict(
        (name, mask.numpy())
        for name, mask in static_topologies(model).items())
    density = OrderedDict(
        (name, float(np.mean(values)))
        for name, values in recorder.density.items())
    density.update((name, float(mask.mean())) for name, mask in static.items())
    layer_ratio = OrderedDict(
        (name, layer_dynamic[name] / count / layer_dense[name])
        for name in layer_dense if layer_dense[name] > 0)
    budget = budget_target(cfg)

    os.makedirs(args.out_dir, exist_ok=True)
    written = []

    def out(name):
        written.append(osp.join(args.out_dir, name))
        return written[-1]

    for module in dict.fromkeys(n.split('.')[0] for n in dynamic):
        layers = {n: v for n, v in dynamic.items() if n.split('.')[0] ==
                  module}
        plot_topologies(
            layers, out(f'topology_{module}.png'),
            f'{module}: fraction of {count} images in which each group '
            'reads each input channel', 'group')
    for module in dict.fromkeys(n.split('.')[0] for n in static):
        layers = {n: v for n, v in static.items() if n.split('.')[0] ==
                  module}
        plot_topologies(layers, out(f'topology_{module}_static.png'),
                        f'{module}: static connections (filters grouped by '
                        'input set, channels by first reader)', 'filter')
    plot_density(density, recorder.target, layer_ratio, budget,
                 out('density.png'))
    plot_histogram(per_image, dense, budget, out('macs_hist.png'))
    picks = pick_examples(per_image, args.examples)
    plot_examples([(images[i], per_image[i], stages[i]) for i in picks],
                  dense, out('examples.png'))

    summary = dict(
        config=args.config, checkpoint=args.checkpoint, images=count,
        dense=dense, budget_target=budget,
        macs=dict(mean=float(np.mean(per_image)),
                  std=float(np.std(per_image)),
                  min=float(np.min(per_image)),
                  max=float(np.max(per_image))),
        density=density, density_target=recorder.target,
        layer_macs_ratio=layer_ratio,
        examples=[dict(image=images[i], macs=per_image[i],
                       stages=stages[i]) for i in picks])
    with open(out('groups.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print(f'{count} image(s): MACs of the grouped parts '
          f'{summary["macs"]["mean"] / dense:.3f}x dense on average; wrote')
    for path in written:
        print(f'  {path}')


if __name__ == '__main__':
    main()
