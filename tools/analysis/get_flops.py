"""Dense and dynamic MACs of a model with mmlgc layers, at real input sizes.

    python tools/analysis/get_flops.py CONFIG [--checkpoint CKPT] \
        [--num-images N] [--shape H [W]] [--out stats.json]

Two counts, side by side:

* mmengine's analyzer (``get_model_complexity_info``): MACs ("flops") and
  parameters of the whole model and of its backbone, traced on the first
  input. It sees tensor shapes only, so it counts every grouped conv as dense
  (the masked form replicates the input per head but its ``groups=G`` conv
  costs as much as the dense conv).
* mmlgc's records (:mod:`mmlgc.complexity`): the grouped layers report, per
  image, the dense MACs and the MACs a sparse execution pays given that
  image's masks, generators and the producer "bonus" included, in the MSGC
  reference counter's convention (one op per BN/ReLU output). Reported as
  mean/std/min/max over ``--num-images`` images of the config's test set
  (pipeline and resize as in testing), per layer and in total.

Per module (``modules``: backbone, neck, heads), the whole model runs
(``mode='tensor'``) so grouped necks report too: the analyzer's count of the
module (first input) and, for modules with grouped layers, mmlgc's dense,
static and dynamic (mean/std/min/max) MACs; the neck's and heads' layers are
listed as ``module.layer``. ``static`` is the mask-independent number a
method defines (DGC: the conv at its ``keep`` fraction, the reference
counter's; static groups: their connectivity), else the measured mean
(MSGC's masks are per image). ``whole_model`` estimates the detector's
per-image MACs: the analyzer's total with each grouped module's dense MACs
replaced by its dynamic ones (the conventions differ by the BN/ReLU ops,
about 1 %).

With ``--shape`` a random input of that size replaces the data set (one
"image"). For classifiers the ImageNet head (global pool + FC) is added in the
MSGC convention, so ``--shape 224`` reproduces the paper's check numbers
(ResNet-18 1817.21 M, ResNet-50 4099.70 M dense).

A model with SG-CNN layers is also counted in the SG-CNN reference
counter's convention (:func:`mmlgc.layers.self_grouping.reference_complexity`:
active connections, no BN/ReLU/pooling ops, parameters of the active
connections) on the first input, the whole classifier or the detector's
backbone: ``--shape 224`` on an ImageNet classifier gives the paper's
ResNet-50 numbers (4.09 G MACs / 25.55 M params dense).

A backbone with static groups (FLGC, SG-CNN) also gets its parameters
counted from the actual connectivity (``backbone_params``): every grouped
conv at ``k²·connections`` (+ bias), without FLGC's training-only assignment
logits; what its deployed form holds, BN unfolded.
"""
import argparse
import json
import os
import os.path as osp
from functools import partial
from itertools import islice

import torch
from mmengine.analysis import FlopAnalyzer, get_model_complexity_info
from mmengine.config import DictAction
from mmengine.runner import load_checkpoint

import mmlgc  # noqa: F401  (registers modules, applies the stack fixes)
from mmlgc.complexity import clear_costs, collect_costs
from mmlgc.layers import ConnectionMaskedConv2d
from mmlgc.layers.flgc import GROUP_LOGITS_KEY
from mmlgc.layers.self_grouping import (reference_complexity,
                                        self_grouped_layers)
from mmlgc.utils.checkpoint_checks import enable_checkpoint_checks
from mmlgc.utils.config import build_model, load_config
from mmlgc.utils.inputs import forward_all, random_batch, test_set_batches


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint', help='trained weights (masks come '
                        'from its generators); default: initialised model')
    parser.add_argument('--num-images', type=int, default=100)
    parser.add_argument('--shape', type=int, nargs='+',
                        help='a random input of this size instead of data')
    parser.add_argument('--out', help='write the statistics as JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def classifier_head_macs(model, features: torch.Tensor) -> int:
    """MSGC convention for an ImageNet head: ``C·(H'W' + classes)``."""
    fc = getattr(getattr(model, 'head', None), 'fc', None)
    if fc is None or features is None:
        return 0
    return fc.in_features * (features.shape[2] * features.shape[3] +
                             fc.out_features)


def with_samples(model, data_samples):
    """``model`` whose forward gets ``data_samples`` bound, so the analyzer
    can trace it from the inputs alone (as mmdet's get_flops.py does):
    two-stage detectors need image metadata even in ``mode='tensor'``."""
    model.forward = partial(type(model).forward, model,
                            data_samples=data_samples)
    return model


def sgcnn_reference(model, inputs):
    """SG-CNN's reference counts: the whole classifier (its grouped FC
    included), a detector's backbone."""
    if hasattr(model, 'head') and hasattr(model.head, 'fc'):
        counts = reference_complexity(model, inputs, mode='tensor')
        return dict(scope='classifier', **counts)
    return dict(scope='backbone',
                **reference_complexity(model.backbone, inputs))


def connectivity_params(module):
    """(dense, actual) parameters of ``module`` with its static-group
    convs dense or at their active connections; None without any."""
    masked = [m for m in module.modules()
              if isinstance(m, ConnectionMaskedConv2d)]
    if not masked:
        return None
    dense = sum(p.numel() for name, p in module.named_parameters()
                if GROUP_LOGITS_KEY not in name)
    actual = dense - sum(
        m.weight.numel() - m.layout().connections * m.weight[0, 0].numel()
        for m in masked)
    return dict(dense=dense, actual=actual, ratio=actual / dense)


def module_flops(model, inputs) -> dict:
    """The analyzer's dense-equivalent count of each top-level module
    (``model`` with its data samples bound, see :func:`with_samples`)."""
    analyzer = FlopAnalyzer(model, (inputs, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    counts = analyzer.by_module()
    return {name: counts[name] for name, _ in model.named_children()
            if counts.get(name)}


def record_module(entries: dict, costs) -> None:
    """Append one image's records of a module (``{'module': summary}``)."""
    for module, summary in costs.items():
        entry = entries.setdefault(module, dict(dense=summary.dense,
                                                static=[], dynamic=[],
                                                layers={}))
        entry['static'].append(summary.expected)
        entry['dynamic'].append(summary.dynamic.item())
        for name, record in summary.per_layer.items():
            layer = entry['layers'].setdefault(
                name or module, dict(dense=record.dense,
                                     static=record.expected, dynamic=[]))
            layer['dynamic'].append(record.dynamic.item())


def module_costs(model) -> dict:
    """``{top-level module: CostSummary}`` of the modules that reported."""
    found = {}
    for name, child in model.named_children():
        try:
            found[name] = collect_costs(child)
        except RuntimeError:  # nothing grouped in this module
            continue
    return found


def stats(values):
    t = torch.tensor(values, dtype=torch.float64)
    return dict(mean=t.mean().item(), std=t.std(unbiased=False).item(),
                min=t.min().item(), max=t.max().item())


def load_model(args):
    """The config and its model (from ``--checkpoint`` if given), in eval."""
    cfg = load_config(args.config, args.cfg_options)
    model_cfg = cfg.model.copy()
    if args.checkpoint:
        model_cfg.backbone.pop('init_cfg', None)
    model = build_model(cfg, model_cfg)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    return cfg, model.eval()


def count(model, batches) -> dict:
    """Run every batch and collect both counts: mmlgc's records per image
    (backbone, its layers, every module), and on the first input mmengine's
    analyzer and the SG-CNN reference counter."""
    raw = dict(dense=None, head=0, dynamic=[], layers={}, sizes=[],
               modules={}, analyzer=None, backbone_analyzer=None,
               per_module_flops=None, sgcnn=None)
    grouped = any(True for _ in self_grouped_layers(model))
    captured = {}
    model.backbone.register_forward_hook(
        lambda module, args, out: captured.update(feats=out))
    with torch.no_grad():
        for data in batches:
            inputs = data['inputs']
            clear_costs(model)
            forward_all(model, data)  # every module reports, heads too
            record_module(raw['modules'], module_costs(model))
            costs = collect_costs(model.backbone)
            raw['head'] = classifier_head_macs(model, captured['feats'][-1])
            raw['dense'] = costs.dense + raw['head']
            raw['dynamic'].append(costs.dynamic.item() + raw['head'])
            raw['sizes'].append(list(inputs.shape[2:]))
            for name, record in costs.per_layer.items():
                entry = raw['layers'].setdefault(
                    name or 'stem', dict(dense=record.dense, dynamic=[]))
                entry['dynamic'].append(record.dynamic.item())
            if raw['analyzer'] is None:
                raw['analyzer'] = get_model_complexity_info(
                    with_samples(model, data['data_samples']),
                    inputs=(inputs, ), show_table=False, show_arch=False)
                raw['per_module_flops'] = module_flops(model, inputs)
                del model.forward  # the class's forward again
                raw['backbone_analyzer'] = get_model_complexity_info(
                    model.backbone, inputs=(inputs, ), show_table=False,
                    show_arch=False)
            if grouped and raw['sgcnn'] is None:
                raw['sgcnn'] = sgcnn_reference(model, inputs)
    return raw


def summarise(raw, model, args) -> dict:
    """The report (``--out``'s JSON) from :func:`count`'s records."""
    dense, analyzer = raw['dense'], raw['analyzer']
    summary = stats(raw['dynamic'])
    result = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        images=len(raw['dynamic']),
        input_sizes=dict(first=raw['sizes'][0],
                         distinct=len(set(map(tuple, raw['sizes'])))),
        backbone_mmlgc=dict(
            dense=dense, dynamic=summary,
            ratio={k: v / dense for k, v in summary.items()
                   if k != 'std'}),
        analyzer=dict(
            model_flops=analyzer['flops'], model_params=analyzer['params'],
            backbone_flops=raw['backbone_analyzer']['flops'],
            backbone_params=raw['backbone_analyzer']['params']),
        layers={
            name: dict(dense=entry['dense'], dynamic=stats(entry['dynamic']))
            for name, entry in raw['layers'].items()
        })
    modules, per_module_flops = raw['modules'], raw['per_module_flops']
    result['modules'] = {}
    whole = dict(dense=analyzer['flops'], dynamic=analyzer['flops'])
    for name in dict.fromkeys([*per_module_flops, *modules]):
        entry = dict(analyzer_flops=per_module_flops.get(name))
        if name in modules:
            m = modules[name]
            dyn = stats(m['dynamic'])
            entry['mmlgc'] = dict(
                dense=m['dense'], static=stats(m['static'])['mean'],
                dynamic=dyn, ratio=dyn['mean'] / m['dense'])
            if entry['analyzer_flops'] is not None:
                whole['dynamic'] += dyn['mean'] - m['dense']
        result['modules'][name] = entry
    whole['ratio'] = whole['dynamic'] / whole['dense']
    result['whole_model'] = whole
    result['module_layers'] = {
        f'{module}.{name}' if name != module else name: dict(
            dense=layer['dense'], static=layer['static'],
            dynamic=stats(layer['dynamic']))
        for module, m in modules.items() if module != 'backbone'
        for name, layer in m['layers'].items()
    }
    for name, entry in result['layers'].items():
        record = modules['backbone']['layers'].get(
            'backbone' if name == 'stem' else name)
        entry['static'] = record['static'] if record else None
    if raw['sgcnn'] is not None:
        result['sgcnn_reference'] = raw['sgcnn']
    params = connectivity_params(model.backbone)
    if params is not None:
        result['backbone_params'] = params
    return result


def print_report(result, raw) -> None:
    sizes, whole = result['input_sizes']['first'], result['whole_model']
    print(f'\n{result["config"]}: {result["images"]} image(s), first input '
          f'{sizes[0]}x{sizes[1]}')
    print(f'{"layer":<24}{"dense MMACs":>14}{"dynamic mean":>14}'
          f'{"std":>10}{"ratio":>8}')
    for name, entry in [*result['layers'].items(),
                        *result['module_layers'].items()]:
        mean = entry['dynamic']['mean']
        print(f'{name:<24}{entry["dense"] / 1e6:>14.2f}{mean / 1e6:>14.2f}'
              f'{entry["dynamic"]["std"] / 1e6:>10.2f}'
              f'{mean / entry["dense"]:>8.3f}')
    print('-' * 70)
    print(f'{"module (MMACs)":<16}{"analyzer":>11}{"dense":>11}'
          f'{"static":>11}{"dynamic":>11}{"std":>8}{"min":>10}{"max":>10}'
          f'{"ratio":>7}')
    for name, entry in result['modules'].items():
        flops = entry['analyzer_flops']
        line = f'{name:<16}' + (f'{flops / 1e6:>11.1f}' if flops is not None
                                else f'{"-":>11}')
        m = entry.get('mmlgc')
        if m:
            d = m['dynamic']
            line += (f'{m["dense"] / 1e6:>11.1f}{m["static"] / 1e6:>11.1f}'
                     f'{d["mean"] / 1e6:>11.1f}{d["std"] / 1e6:>8.1f}'
                     f'{d["min"] / 1e6:>10.1f}{d["max"] / 1e6:>10.1f}'
                     f'{m["ratio"]:>7.3f}')
        print(line)
    print(f'whole model per image: analyzer {whole["dense"] / 1e9:.3f} G '
          f'dense-equivalent, {whole["dynamic"] / 1e9:.3f} G with the '
          f'grouped modules at their mean dynamic MACs ({whole["ratio"]:.3f})')
    print('-' * 70)
    dense, summary = raw['dense'], result['backbone_mmlgc']['dynamic']
    with_head = ', + classifier head' if raw['head'] else ''
    print(f'backbone (mmlgc, MSGC convention{with_head}'
          f'): dense {dense / 1e6:.2f} M MACs, dynamic mean '
          f'{summary["mean"] / 1e6:.2f} M (std {summary["std"] / 1e6:.2f}, '
          f'min {summary["min"] / 1e6:.2f}, max {summary["max"] / 1e6:.2f}),'
          f' ratio {summary["mean"] / dense:.3f}')
    analyzer, backbone = raw['analyzer'], raw['backbone_analyzer']
    print(f'mmengine analyzer (dense-equivalent, first input): model '
          f'{analyzer["flops_str"]} MACs / {analyzer["params_str"]} params, '
          f'backbone {backbone["flops_str"]} / {backbone["params_str"]}')
    sgcnn = result.get('sgcnn_reference')
    if sgcnn is not None:
        print(f'SG-CNN reference counter ({sgcnn["scope"]}, first input): '
              f'{sgcnn["macs"] / 1e9:.3f} G MACs, {sgcnn["params"] / 1e6:.3f}'
              ' M params')
    params = result.get('backbone_params')
    if params is not None:
        print(f'backbone parameters, static groups at their connections: '
              f'{params["actual"] / 1e6:.3f} M of {params["dense"] / 1e6:.3f}'
              f' M dense ({params["ratio"]:.3f})')


def main():
    args = parse_args()
    # Bad checkpoints are clear errors in every mmlgc tool (not on import).
    enable_checkpoint_checks()
    cfg, model = load_model(args)
    if args.shape:
        batches = [random_batch(cfg, 1, *(args.shape * 2)[:2])]
    else:
        batches = islice(test_set_batches(cfg, model), args.num_images)
    raw = count(model, batches)
    if not raw['dynamic']:
        raise RuntimeError(f'no images in the test set of {args.config}')
    result = summarise(raw, model, args)
    print_report(result, raw)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
