"""CPU latency of a grouped backbone (and its grouped neck and whole
detector): dense vs masked (the reference's execution) vs deployed (mmlgc's
ops), ratios from one run, next to the backbone's measured MACs.

    # an MSGC backbone, masks calibrated to a MAC budget (no training needed)
    python tools/analysis/benchmark_model.py --backbone resnet50 --target 0.46
    # a trained model: its own masks on test-set images, backbone and the
    # whole detector (``mode='predict'``: heads, NMS, everything a user times)
    python tools/analysis/benchmark_model.py --config CONFIG --checkpoint CKPT

Forms, all in eval mode at batch 1 (``--batch``):

* ``dense``: the dense network of the same architecture (mmdet ResNet /
  MobileNetV2), BN folded into the convs, as a deployed dense model runs
  (with the deployed form's planned max pools, so that the ratio measures
  the grouped convs);
* ``masked``: the MSGC model as the reference runs it at test time, every
  dynamic conv in the masked dense form (input replicated per head);
* ``deployed``: ``switch_to_deploy()`` (BN folded, grouped convs through
  :mod:`mmlgc.ops.plans`: per layer the fastest exact execution measured on
  this CPU, e.g. the compiled op computing only active channel pairs, a
  zero-weight dense conv, merged groups on oneDNN's grouped conv);
* ``ops-only`` (``--ops-only``): the deployed model with every grouped conv
  forced onto the compiled op, as deployed convs ran before plans (max
  pools planned as in the other forms).

With ``--config`` the inputs are the first ``--batch`` images of the
config's test set, through its pipeline and data preprocessor (a trained
model's masks depend on what it sees: noise would time other masks); with
``--sizes`` random inputs of those sizes replace them (e.g. a COCO config
at 800x1216 without the COCO data).

Without a checkpoint, DGC runs the final ``k`` of its schedule, SG-CNN's
convs are self-grouped in one shot to the pruned fraction that gives
``--target``, and MSGC's masks come from the gates' biases: every mask
generator's last conv gets weight 0 and a bias that opens a random
(seeded) fraction ``d`` of its channels, ``d`` bisected so that the
backbone's measured MACs ratio (``mmlgc.complexity``, at the benchmarked input
size, generators included) equals ``--target``. Static masks at batch 1 time
the same work as per-sample masks would.

The dense counterpart is the mm* backbone of the same architecture with the
grouped model's conv weights. For MSGC it computes what the MSGC model
computes with every gate open; a DGC model (pre-activation norms, gates) is
a different function. ``--dense-checkpoint`` loads a trained dense baseline
into it instead (the comparison a user makes: their dense detector against
their grouped one, e.g. ``tools/demo.py``'s). A grouped neck
(``MSGCFPN``, ``DGCFPN``, ``FLGCFPN``) has mmdet's ``FPN`` with its
arguments as dense counterpart, and a ``neck`` scope: each form's neck on
the same (dense) backbone features.

The ``detector`` scope gives every form's heads the same work: each
head's post-processing runs with score threshold -1 and NMS IoU threshold
1, so the RoI head gets exactly the RPN's ``max_per_img`` proposals and the
last NMS sees every box, whatever the scores. Without this, the work after
the backbone follows each form's scores, not its cost: the dense
counterpart of a gated model computes with every gate open, features the
heads were never trained on (the shapes demo's MSGC Faster R-CNN: 46 RPN
proposals and 0 detections dense, 300 and 36 masked/deployed, which made the
dense detector 2.2x faster than the masked one). ``--config-test-cfg`` times
the config's own ``test_cfg`` instead. What remains form-dependent is
the boxes' sizes (RoIAlign's adaptive sampling grid grows with a box):
with the gates-open dense form, whose proposals are degenerate, the RoI
head's time still differs by ~40%; ``--dense-checkpoint`` gives a dense
form whose proposals are a trained model's.

Timing (:mod:`mmlgc.ops.timing`): median over ``--rounds`` rounds; in each
round the forms run in a rotating order, each timed on the second of two
back-to-back calls (its own data warm in cache). Each line gives the
median, the relative interquartile range (``±``) and η = speed-up x MACs
ratio (1.0: time proportional to MACs); a warning flags forms whose rounds
spread by more than 15%. This machine drifts by up to 2x between runs:
compare ratios within one run only. Results: a table and ``--out`` (JSON,
with every round's quartiles, min and max).
"""
import argparse
import copy
import inspect
import json
import os
import os.path as osp

import torch
from mmcv.cnn import fuse_conv_bn
from mmengine.config import DictAction
from mmdet.models.necks import FPN
from mmengine.runner import load_checkpoint

import mmlgc  # noqa: F401  (registers modules, applies compat fixes)
from mmlgc.complexity import collect_costs
from mmlgc.deploy import DeployableBackboneMixin, deploy_model
from mmlgc.ops import plans
from mmlgc.ops.timing import (pin_allocator, time_interleaved,
                              warn_if_noisy)
from mmlgc.models import (DGCResNet, FLGCMobileNetV2, FLGCResNet,
                          MSGCMobileNetV2, MSGCResNet, SGCNNResNet)
from mmlgc.registry import MODELS
from mmlgc.utils.checkpoint_checks import enable_checkpoint_checks
from mmlgc.utils.config import build_model, load_config
from mmlgc.utils.inputs import random_batch, test_set_batches

FORMS = ('dense', 'masked', 'deployed')
BACKBONES = {
    'resnet18': (MSGCResNet, dict(depth=18, out_indices=(0, 1, 2, 3))),
    'resnet50': (MSGCResNet, dict(depth=50, out_indices=(0, 1, 2, 3))),
    'mobilenet_v2': (MSGCMobileNetV2, dict(out_indices=(1, 2, 4, 6))),
    'dgc_resnet18': (DGCResNet, dict(depth=18, out_indices=(0, 1, 2, 3))),
    'dgc_resnet50': (DGCResNet, dict(depth=50, out_indices=(0, 1, 2, 3))),
    'sgcnn_resnet18': (SGCNNResNet, dict(depth=18,
                                         out_indices=(0, 1, 2, 3))),
    'sgcnn_resnet50': (SGCNNResNet, dict(depth=50,
                                         out_indices=(0, 1, 2, 3))),
    'flgc_resnet18': (FLGCResNet, dict(depth=18, out_indices=(0, 1, 2, 3))),
    'flgc_resnet50': (FLGCResNet, dict(depth=50, out_indices=(0, 1, 2, 3))),
    'flgc_dw_resnet50': (FLGCResNet, dict(depth=50, depthwise=True,
                                          out_indices=(0, 1, 2, 3))),
    'flgc_mobilenet_v2': (FLGCMobileNetV2, dict(out_indices=(1, 2, 4, 6))),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', help='an mmlgc detector/classifier config')
    parser.add_argument('--checkpoint', help='its trained checkpoint')
    parser.add_argument('--dense-checkpoint',
                        help='with --checkpoint: the trained dense baseline '
                        '(e.g. faster_rcnn_r18_shapes) as the dense form, '
                        'instead of the grouped model\'s weights in the '
                        'dense architecture')
    parser.add_argument('--backbone', choices=sorted(BACKBONES),
                        default='resnet50',
                        help='without --config: which MSGC backbone')
    parser.add_argument('--target', type=float, default=0.46,
                        help='without --checkpoint: MACs ratio to calibrate '
                        'MSGC masks to (DGC runs its final k)')
    parser.add_argument('--sizes', nargs='+',
                        help='random inputs of these sizes, H or HxW '
                        '(default: 224 800x1216 without --config; the test '
                        'set\'s images with it)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--no-detector', action='store_true',
                        help='with --config: time the backbone only')
    parser.add_argument('--config-test-cfg', action='store_true',
                        help='detector scope: post-process with the '
                        'config\'s test_cfg (work then follows each form\'s '
                        'scores) instead of the same work for every form')
    parser.add_argument('--threads', type=int,
                        help='torch threads (default: torch\'s choice); 1 '
                        'gives steadier ratios on a shared machine')
    parser.add_argument('--plan', default=None,
                        help='force one execution for the deployed layers '
                        '(mmlgc.ops.plans: kernel, dense, grouped, gathered, '
                        'batch_union); default: $MMLGC_CONV_PLAN, else the '
                        'fastest measured per layer (cached on disk)')
    parser.add_argument('--ops-only', action='store_true',
                        help='also time the deployed model with every layer '
                        'on the compiled op (no plan: the execution before '
                        'plans existed), interleaved with the other forms')
    parser.add_argument('--no-masked', action='store_true',
                        help='leave out the masked form (the references\' '
                        'training form, the slowest by far at detection '
                        'sizes)')
    parser.add_argument('--default-allocator', action='store_true',
                        help='leave glibc\'s allocator at its defaults: '
                        'large activations are then mapped and '
                        'page-faulted in on every call, and a form\'s time '
                        'depends on what ran before it (see '
                        'docs/measurements.md)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='work_dirs/benchmark_model.json')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='with --config: override its settings')
    return parser.parse_args()


def parse_size(text):
    h, _, w = text.partition('x')
    return int(h), int(w or h)


def dense_backbone_cfg(cfg):
    """The dense mm* backbone config a grouped backbone config extends."""
    cls = MODELS.get(cfg['type'])
    if not hasattr(cls, 'dense_cfg'):
        raise ValueError(f'no dense counterpart known for {cfg["type"]}')
    cfg = cls.dense_cfg(cfg)
    cfg.pop('init_cfg', None)
    return cfg


def is_grouped_neck(cfg):
    return isinstance(cfg, dict) and cfg.get('type', '').split('.')[-1] in (
        'MSGCFPN', 'DGCFPN', 'FLGCFPN')


def dense_neck_cfg(cfg):
    """mmdet's ``FPN`` with a grouped FPN's own arguments (the grouped
    necks take FPN's arguments plus their method's)."""
    fpn_args = inspect.signature(FPN.__init__).parameters
    return {
        'type': 'FPN',
        **{k: v
           for k, v in cfg.items() if k in fpn_args and k != 'init_cfg'}
    }


def build_from_config(path, checkpoint, cfg_options=None,
                      dense_checkpoint=None):
    """(grouped model, dense model, cfg) from an mmlgc config: the same
    config with the backbone (and a grouped neck) swapped for its dense
    counterpart."""
    cfg = load_config(path, cfg_options)
    model_cfg = cfg.model.copy()
    model_cfg.backbone.pop('init_cfg', None)
    dense_cfg = copy.deepcopy(model_cfg)
    dense_cfg.backbone = dense_backbone_cfg(model_cfg.backbone)
    if 'neck' in model_cfg and is_grouped_neck(model_cfg.neck):
        dense_cfg.neck = dense_neck_cfg(model_cfg.neck)
    model, dense = build_model(cfg, model_cfg), build_model(cfg, dense_cfg)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
        # The dense model shares every weight the MSGC model has.
        load_shared_weights(dense, model)
    if dense_checkpoint:
        load_checkpoint(dense, dense_checkpoint, map_location='cpu',
                        strict=True)
    return model, dense, cfg


def load_shared_weights(dense, model):
    """Copy into ``dense`` every tensor of ``model`` with the same name
    and shape (not, e.g., a depthwise conv the dense model has full)."""
    own = dense.state_dict()
    dense.load_state_dict(
        {k: v for k, v in model.state_dict().items()
         if k in own and own[k].shape == v.shape}, strict=False)


def untrained_masks(backbone, x, target, seed):
    """Masks for a backbone without a checkpoint (each backbone's
    ``calibrate_untrained``): MSGC's calibrated to the MAC ``target``;
    DGC's at the end of its schedule (``k`` of its ``keep``; ``--target``
    does not apply); SG-CNN's self-grouped in one shot; FLGC's groups as
    they are. Returns (density or None, ratio)."""
    return backbone.calibrate_untrained(x, target, seed)


def time_forms(forms, x, rounds):
    """:class:`~mmlgc.ops.timing.Timing` of each callable on ``x``:
    interleaved rounds, rotating order, each timed warm."""
    with torch.no_grad():
        return time_interleaved({name: (lambda f=f: f(x))
                                 for name, f in forms.items()}, rounds)


def three_forms(model, dense):
    """dense (BN folded), masked (reference form) and deployed copies."""
    # mm* backbones' train()/eval() return None: call, then use the copy.
    dense, masked, deployed = (copy.deepcopy(m)
                               for m in (dense, model, model))
    for m in (dense, masked, deployed):
        m.eval()
    dense = fuse_conv_bn(dense)
    # The deployed form's max pools run planned (mmlgc.ops.plans); the
    # dense one gets the same, so the ratio measures the grouped convs.
    plans.plan_max_pools(dense)
    for module in masked.modules():  # the backbone, a grouped neck
        if isinstance(module, DeployableBackboneMixin):
            module.sparse_eval(False)
    deploy_model(deployed)
    return dict(dense=dense, masked=masked, deployed=deployed)


def backbone_call(model):
    backbone = getattr(model, 'backbone', model)
    return lambda inputs: backbone(
        inputs['inputs'] if isinstance(inputs, dict) else inputs)


def neck_call(model, features):
    """The neck alone, on fixed backbone features."""
    return lambda inputs: model.neck(features)


def detector_call(model):
    """The whole detector as in testing: heads, NMS and all."""
    return lambda inputs: model(**inputs, mode='predict')


def same_head_work(model):
    """Set every head's post-processing to work independent of scores:
    ``score_thr`` -1 (below every score, even one that underflowed to 0) and
    NMS ``iou_threshold`` 1 (a box is suppressed only by an IoU above the
    threshold), so each stage keeps its ``nms_pre`` / ``max_per_img`` boxes.
    Returns ``model``."""

    def update(cfg):
        for key, value in cfg.items():
            if key == 'score_thr':
                cfg[key] = -1.
            elif key == 'iou_threshold':
                cfg[key] = 1.
            elif isinstance(value, dict):
                update(value)

    for module in model.modules():
        test_cfg = getattr(module, 'test_cfg', None)
        if isinstance(test_cfg, dict):
            update(test_cfg)
    return model


def time_scopes(name, scopes, inputs, ratio, density, args):
    """Time every scope, print one line each (median ms, relative IQR in
    brackets; η = speed-up x MACs ratio, 1.0 = time proportional to MACs);
    warns when a form's rounds spread widely. Returns the result rows."""
    rows = []
    for scope, callables in scopes.items():
        timings = time_forms(callables, inputs, args.rounds)
        size = list(inputs_size(inputs))
        warn_if_noisy(timings, f'{name} {scope} {size[0]}x{size[1]} '
                      f'b{args.batch}')
        ms = {k: t.median for k, t in timings.items()}
        speedup = {k: ms['dense'] / v for k, v in ms.items()}
        row = dict(model=name, scope=scope, size=size, batch=args.batch,
                   macs_ratio=ratio, calibrated_density=density, ms=ms,
                   timings={k: t.summary() for k, t in timings.items()},
                   speedup=speedup,
                   eta=speedup['deployed'] * ratio if scope == 'backbone'
                   else None)
        rows.append(row)
        forms = ' | '.join(
            f'{form} {ms[form]:8.1f} ms ±{timings[form].spread:4.0%}'
            + ('' if form == 'dense' else f' ({speedup[form]:.2f}x)')
            for form in timings)
        eta = f' | η {row["eta"]:.2f}' if row['eta'] is not None else ''
        print(f'{name:>20} {scope:>8} {size[0]}x{size[1]} b{args.batch} '
              f'MACs {ratio:.3f} | {forms}{eta}', flush=True)
    return rows


def forcing_ops(call):
    """``call`` with every planned layer forced onto the compiled op."""

    def run(inputs):
        previous = plans.force_plan('kernel')
        try:
            return call(inputs)
        finally:
            plans.force_plan(previous)

    return run


def inputs_size(inputs):
    tensor = inputs['inputs'] if isinstance(inputs, dict) else inputs
    return tensor.shape[2:]


def main():
    args = parse_args()
    # Bad checkpoints are clear errors in every mmlgc tool (not on import).
    enable_checkpoint_checks()
    torch.manual_seed(args.seed)
    allocator = ('pinned' if not args.default_allocator and pin_allocator()
                 else 'default')
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.plan:
        plans.force_plan(args.plan)
    if args.checkpoint and not args.config:
        raise SystemExit('--checkpoint needs the --config it was trained '
                         'with')
    if args.dense_checkpoint and not args.checkpoint:
        raise SystemExit('--dense-checkpoint is the baseline of a trained '
                         'model: give its --checkpoint too')
    if args.config:
        model, dense, cfg = build_from_config(
            args.config, args.checkpoint, args.cfg_options,
            args.dense_checkpoint)
        name = osp.splitext(osp.basename(args.config))[0]
    else:
        cls, kwargs = BACKBONES[args.backbone]
        model = cls(**kwargs)
        dense_kwargs = cls.dense_cfg(kwargs)
        del dense_kwargs['type']
        dense = cls.dense_class(**dense_kwargs)
        load_shared_weights(dense, model)
        name = f'{cls.__name__} {args.backbone}'
    model.eval()
    dense.eval()
    backbone = model.backbone if hasattr(model, 'backbone') else model
    if not args.config:
        batches = [torch.randn(args.batch, 3, *parse_size(size))
                   for size in args.sizes or ('224', '800x1216')]
    elif args.sizes:
        batches = [random_batch(cfg, args.batch, *parse_size(size))
                   for size in args.sizes]
    else:
        batches = [next(test_set_batches(cfg, model, args.batch))]
    results = []
    for inputs in batches:
        x = inputs['inputs'] if isinstance(inputs, dict) else inputs
        if args.checkpoint:
            with torch.no_grad():
                backbone(x)
            ratio, density = collect_costs(backbone).ratio.item(), None
        else:
            # The masks are static (the same for every image): calibrating
            # them on one image costs 1/batch of the forwards.
            density, ratio = untrained_masks(backbone, x[:1], args.target,
                                             args.seed)
        forms = three_forms(model, dense)
        if args.no_masked:
            del forms['masked']
        scopes = {'backbone': {k: backbone_call(v) for k, v in forms.items()}}
        if isinstance(getattr(model, 'neck', None), DeployableBackboneMixin):
            with torch.no_grad():
                features = forms['dense'].backbone(x)
            scopes['neck'] = {
                k: neck_call(v, features) for k, v in forms.items()}
        if isinstance(inputs, dict) and not args.no_detector:
            if not args.config_test_cfg:  # the forms are copies: in place
                for form in forms.values():
                    same_head_work(form)
            scopes['detector'] = {
                k: detector_call(v) for k, v in forms.items()}
        if args.ops_only:
            for callables in scopes.values():
                callables['ops-only'] = forcing_ops(callables['deployed'])
        results += time_scopes(name, scopes, inputs, ratio, density, args)
    executions = plans.chosen_counts()
    print('deployed layers ran: ' + (', '.join(
        f'{name} x{count}' for name, count in sorted(executions.items()))
        or 'no planned layer'))
    if args.out:
        os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(threads=torch.get_num_threads(),
                           allocator=allocator, plan=plans.forced_plan(),
                           executions=executions,
                           results=results), f, indent=1)


if __name__ == '__main__':
    main()
