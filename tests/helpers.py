"""Helpers the tests share (fixtures live in conftest.py): import them as
``from helpers import ...`` (tests/ is on sys.path beside conftest.py)."""
import importlib.util
import os.path as osp
import pickle

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(path: str):
    """A repository script (``'tools/deploy.py'``) as a module, to call its
    functions in-process; a fresh module object each call, so a test may
    replace its attributes."""
    name = osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_options(tiny_shapes, task, two_stage=False):
    """``--cfg-options`` pointing a shapes config at the tiny data set."""
    root = f'{tiny_shapes}/{task}/'
    keys = ['train_dataloader.dataset.data_root=' + root,
            'val_dataloader.dataset.data_root=' + root,
            'test_dataloader.dataset.data_root=' + root]
    if task == 'det':
        keys += [f'{split}_evaluator.ann_file={root}annotations/'
                 'instances_val.json' for split in ('val', 'test')]
        # A detector this briefly trained scores below the default 0.05,
        # and CocoMetric reports nothing for empty results.
        keys += ['model.test_cfg.rcnn.score_thr=0'
                 if two_stage else 'model.test_cfg.score_thr=0']
    return keys


def build_tiny_detector(detector, backbone, in_channels, tmp_path,
                        neck=None):
    """mmdet's base model ``detector`` (``'retinanet_r50_fpn.py'``,
    ``'faster-rcnn_r50_fpn.py'``) with ``backbone`` and its FPN reading
    ``in_channels`` (``neck``: keys to override in the neck's config, e.g.
    ``type='mmlgc.MSGCFPN'``); weights initialised."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    path = tmp_path / 'detector.py'
    path.write_text(f"_base_ = 'mmdet::_base_/models/{detector}'")
    cfg = Config.fromfile(str(path))
    cfg.model.backbone = backbone
    cfg.model.neck.in_channels = in_channels
    cfg.model.neck.update(neck or {})
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def det_sample(size=64):
    """A detection data sample of a ``size``² image with one box."""
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    shape = (size, size)
    sample = DetDataSample(metainfo=dict(img_shape=shape, pad_shape=shape,
                                         scale_factor=(1.0, 1.0),
                                         batch_input_shape=shape))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[4.0, 4.0, 40.0, 30.0]]),
        labels=torch.tensor([1]))
    return sample


def assert_same_detections(expected_pkl, actual_pkl, top=20):
    """Two ``tools/test.py --out`` results hold the same detections up to
    float rounding (a deployed model against the trained one): per image
    the ``top`` best scores agree, and each of the actual top boxes has an
    expected box of the same label and nearly the same score and
    coordinates. Order is not compared: detections of nearly tied scores
    may swap places under rounding."""

    def load(path):
        with open(path, 'rb') as f:
            return sorted(pickle.load(f), key=lambda p: p['img_id'])

    expected, actual = load(expected_pkl), load(actual_pkl)
    assert [p['img_id'] for p in actual] == [p['img_id'] for p in expected]
    for a, b in zip(expected, actual):
        pa, pb = a['pred_instances'], b['pred_instances']
        n = min(len(pa['scores']), len(pb['scores']), top)
        torch.testing.assert_close(pb['scores'][:n], pa['scores'][:n],
                                   rtol=1e-3, atol=1e-4)
        for i in range(n):
            score, box = pb['scores'][i], pb['bboxes'][i]
            match = ((pa['labels'] == pb['labels'][i])
                     & ((pa['scores'] - score).abs() <= 1e-3 * score + 1e-4)
                     & ((pa['bboxes'] - box).abs()
                        <= 1e-2 + 1e-3 * box.abs()).all(dim=1))
            assert match.any(), (f'image {a["img_id"]}: detection {i} '
                                 f'(label {int(pb["labels"][i])}, score '
                                 f'{float(score):.4f}, box {box.tolist()}) '
                                 'has no expected counterpart')
