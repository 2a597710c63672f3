"""Convert a torchvision or mmpretrain classifier checkpoint into an mmlgc
backbone checkpoint.

    python tools/model_converters/classifier2mmlgc.py SRC DST \
        [--source {auto,torchvision,mmpretrain}]

The grouped backbones keep the dense parameter names and shapes of mmdet's
``ResNet`` / ``MobileNetV2``, so conversion is a key mapping:

* torchvision ResNet: the names are already mmdet's; ``fc.*`` is dropped.
* torchvision MobileNetV2: ``features.N...`` -> ``conv1`` / ``layerL.B.
  {expand,depthwise,linear}_conv.{conv,bn}`` / ``conv2``
  (:func:`mmlgc.models.backbones.grouped_mobilenet_v2.torchvision_to_mmdet_keys`);
  ``classifier.*`` is dropped.
* mmpretrain ``ImageClassifier``: the ``backbone.*`` entries; ResNet names
  are mmdet's, MobileNetV2's inverted residuals (``conv.0/1/2``) are
  renamed to mmdet's ``expand_conv`` / ``depthwise_conv`` / ``linear_conv``.
  ``neck.*`` / ``head.*`` are dropped. An mmlgc pretraining checkpoint
  (generators, DGC state) keeps those tensors.

``DST`` holds ``{'state_dict': {'backbone.' + key: tensor}, 'meta': ...}``,
which ``init_cfg=dict(type='Pretrained', checkpoint=DST,
prefix='backbone.')`` loads into any mmlgc backbone of that architecture
(MSGC, DGC, FLGC, SG-CNN): only the method's own tensors are missing, and
the backbones say so in one log line. Written atomically.
"""
import argparse
import re
from typing import Dict

import torch
from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint

import mmlgc  # noqa: F401  (registers modules, applies the stack fixes)
from mmlgc.models.backbones.grouped_mobilenet_v2 import \
    torchvision_to_mmdet_keys
from mmlgc.utils.checkpoint_checks import enable_checkpoint_checks
from mmlgc.utils.io import atomic_write

SOURCES = ('auto', 'torchvision', 'mmpretrain')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='classifier checkpoint (path or URL)')
    parser.add_argument('dst', help='backbone checkpoint to write (.pth)')
    parser.add_argument('--source', choices=SOURCES, default='auto',
                        help='where SRC comes from (default: from its keys)')
    return parser.parse_args()


def state_dict_of(checkpoint) -> Dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict) and 'state_dict' in checkpoint:
        checkpoint = checkpoint['state_dict']
    if isinstance(checkpoint, dict) and 'model' in checkpoint:  # torchvision
        checkpoint = checkpoint['model']  # reference-script checkpoints
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in checkpoint.items()}


def detect_source(state_dict: Dict) -> str:
    """``'mmpretrain'`` for an ImageClassifier's ``backbone.*`` keys,
    ``'torchvision'`` otherwise."""
    if any(k.startswith('backbone.') for k in state_dict):
        return 'mmpretrain'
    return 'torchvision'


def from_torchvision(state_dict: Dict) -> Dict:
    if any(k.startswith('features.') for k in state_dict):  # MobileNetV2
        return torchvision_to_mmdet_keys(state_dict)
    if 'conv1.weight' not in state_dict:
        raise ValueError('not a torchvision ResNet or MobileNetV2 state '
                         'dict: no conv1.weight nor features.*')
    return {k: v for k, v in state_dict.items() if not k.startswith('fc.')}


#: mmpretrain ``InvertedResidual.conv`` children -> mmdet's names, by
#: whether the block expands (mmdet's layer1 has expand ratio 1).
_MMPRETRAIN_MBV2 = {
    False: ('depthwise_conv', 'linear_conv'),
    True: ('expand_conv', 'depthwise_conv', 'linear_conv'),
}


def from_mmpretrain(state_dict: Dict) -> Dict:
    backbone = {
        k[len('backbone.'):]: v
        for k, v in state_dict.items() if k.startswith('backbone.')
    }
    if not backbone:
        raise ValueError('no backbone.* keys: not an mmpretrain classifier')
    # Which blocks expand: those with a third conv (conv.2).
    expands = {
        m[1] for k in backbone
        if (m := re.match(r'(layer\d+\.\d+)\.conv\.2\.', k))
    }
    converted = {}
    for key, value in backbone.items():
        match = re.fullmatch(r'(layer\d+\.\d+)\.conv\.(\d+)\.(.*)', key)
        if match:  # MobileNetV2 inverted residual
            block, index, rest = match[1], int(match[2]), match[3]
            key = f'{block}.{_MMPRETRAIN_MBV2[block in expands][index]}.' \
                  f'{rest}'
        converted[key] = value
    return converted


def convert(state_dict: Dict, source: str = 'auto') -> Dict:
    """Backbone state dict (mmdet names, no prefix) of a classifier's."""
    if source == 'auto':
        source = detect_source(state_dict)
    if source == 'torchvision':
        return from_torchvision(state_dict)
    return from_mmpretrain(state_dict)


def main():
    args = parse_args()
    # Bad checkpoints are clear errors in every mmlgc tool (not on import).
    enable_checkpoint_checks()
    state_dict = state_dict_of(_load_checkpoint(args.src,
                                                map_location='cpu'))
    source = detect_source(state_dict) if args.source == 'auto' \
        else args.source
    backbone = convert(state_dict, source)
    out = {f'backbone.{k}': v for k, v in backbone.items()}
    meta = dict(converted_from=args.src, source=source)
    atomic_write(args.dst, lambda tmp: save_checkpoint(
        dict(state_dict=out, meta=meta), tmp))
    print(f'{source} -> {len(out)} backbone tensors: {args.dst}\n'
          "load with init_cfg=dict(type='Pretrained', checkpoint="
          f"'{args.dst}', prefix='backbone.')")


if __name__ == '__main__':
    main()
