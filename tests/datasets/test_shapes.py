"""The bundled synthetic data: valid COCO json, deterministic, and loadable by
mmdet's CocoDataset and mmpretrain's CustomDataset with the shapes configs."""
import hashlib
import json
import os
import os.path as osp

import numpy as np
import pytest
from pycocotools.coco import COCO

from mmlgc.datasets import SHAPES_CLASSES, ShapesConfig, make_shapes
from mmlgc.datasets.shapes import (draw_classification_image,
                                   draw_detection_image)

SMALL = ShapesConfig(num_train=6, num_val=3, num_cls_train=8, num_cls_val=4)


def tree_digest(root):
    digest = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = osp.join(dirpath, name)
            digest.update(osp.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_output_is_deterministic(tmp_path):
    make_shapes(str(tmp_path / 'a'), SMALL)
    make_shapes(str(tmp_path / 'b'), SMALL)
    assert tree_digest(tmp_path / 'a') == tree_digest(tmp_path / 'b')


def test_seed_changes_the_data(tmp_path):
    make_shapes(str(tmp_path / 'a'), SMALL)
    other = ShapesConfig(**{**SMALL.__dict__, 'seed': 1})
    make_shapes(str(tmp_path / 'b'), other)
    assert tree_digest(tmp_path / 'a') != tree_digest(tmp_path / 'b')


def test_image_does_not_depend_on_split_size():
    bigger = ShapesConfig(**{**SMALL.__dict__, 'num_train': 100})
    img_a, objs_a = draw_detection_image(SMALL, 'train', 2)
    img_b, objs_b = draw_detection_image(bigger, 'train', 2)
    assert np.array_equal(img_a, img_b) and len(objs_a) == len(objs_b)


def test_coco_json_is_valid(tiny_shapes):
    for split, num in (('train', 16), ('val', 8)):
        coco = COCO(f'{tiny_shapes}/det/annotations/instances_{split}.json')
        assert len(coco.getImgIds()) == num
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
            SHAPES_CLASSES)
        anns = coco.loadAnns(coco.getAnnIds())
        per_image = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
        assert min(per_image) >= 1 and max(per_image) <= 5
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128
            assert w >= 4 and h >= 4 and ann['area'] > 0
            assert ann['iscrowd'] == 0
        for img in coco.loadImgs(coco.getImgIds()):
            assert osp.isfile(f'{tiny_shapes}/det/{split}/{img["file_name"]}')
        # every class occurs in the training split
        if split == 'train':
            assert {a['category_id'] for a in anns} == {1, 2, 3, 4}


def test_classification_meta_format(tiny_shapes):
    lines = open(f'{tiny_shapes}/cls/meta/train.txt').read().splitlines()
    assert len(lines) == 64
    for line in lines:
        name, label = line.split()
        assert osp.isfile(f'{tiny_shapes}/cls/train/{name}')
        assert 0 <= int(label) < len(SHAPES_CLASSES)


def test_datasets_load_with_the_shapes_configs(tiny_shapes, repo_root):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    det_cfg = Config.fromfile(f'{repo_root}/configs/retinanet_r18_shapes.py')
    det_cfg.train_dataloader.dataset.data_root = f'{tiny_shapes}/det/'
    from mmdet.registry import DATASETS as DET_DATASETS
    with DefaultScope.overwrite_default_scope('mmdet'):
        det = DET_DATASETS.build(det_cfg.train_dataloader.dataset)
        item = det[0]
    assert len(det) == 16
    assert item['inputs'].shape == (3, 128, 128)
    assert len(item['data_samples'].gt_instances) >= 1

    cls_cfg = Config.fromfile(
        f'{repo_root}/configs/pretrain/resnet18_shapes.py')
    cls_cfg.train_dataloader.dataset.data_root = f'{tiny_shapes}/cls/'
    from mmpretrain.registry import DATASETS as CLS_DATASETS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cls = CLS_DATASETS.build(cls_cfg.train_dataloader.dataset)
        item = cls[0]
    assert len(cls) == 64
    assert item['inputs'].shape == (3, 64, 64)
    with open(f'{tiny_shapes}/cls/meta/train.txt') as f:
        assert int(f.readline().split()[1]) == item['data_samples'].gt_label


def test_cli_writes_the_same_as_the_api(tmp_path, repo_root):
    import subprocess
    import sys
    out = tmp_path / 'cli'
    subprocess.run([
        sys.executable, f'{repo_root}/tools/data/make_shapes.py', '--out',
        str(out), '--num-train', '6', '--num-val', '3', '--num-cls-train',
        '8', '--num-cls-val', '4'
    ], check=True, capture_output=True)
    make_shapes(str(tmp_path / 'api'), SMALL)
    assert tree_digest(out) == tree_digest(tmp_path / 'api')
    info = json.load(open(out / 'det/annotations/instances_val.json'))['info']
    assert info['config']['num_train'] == 6


@pytest.mark.parametrize('bad', [
    dict(min_shapes=3, max_shapes=2),
    dict(min_size=60, max_size=40),
    dict(max_size=200),
    dict(num_val=0),
    dict(max_overlap=1.5),
    dict(cls_clutter=-1),
    dict(cls_noise_std=-2.0),
])
def test_impossible_parameters_are_refused(bad):
    with pytest.raises(ValueError, match='impossible shapes data'):
        ShapesConfig(**bad)


def det_digest(root):
    """The detection split's images and annotations (its ``info``, which
    records the whole generator config, left out)."""
    digest = hashlib.sha256()
    for split in ('train', 'val'):
        for name in sorted(os.listdir(osp.join(root, 'det', split))):
            with open(osp.join(root, 'det', split, name), 'rb') as f:
                digest.update(name.encode() + f.read())
        with open(osp.join(root, 'det', 'annotations',
                           f'instances_{split}.json')) as f:
            coco = json.load(f)
        coco.pop('info')
        digest.update(json.dumps(coco, sort_keys=True).encode())
    return digest.hexdigest()


def test_detection_split_is_unchanged(tmp_path):
    # Recorded before the classification split was made learnable (issue
    # 20): the detection data for a seed must stay what it was.
    make_shapes(str(tmp_path), SMALL)
    assert det_digest(tmp_path) == (
        '3cea734bc879639018c41a6458c9d5a86f7bd090139b62057cdc67841edd9b0c')


def test_classification_options_leave_detection_alone(tmp_path):
    other = ShapesConfig(**{**SMALL.__dict__, 'cls_clutter': 7,
                            'cls_noise_std': 20.0})
    make_shapes(str(tmp_path / 'a'), SMALL)
    make_shapes(str(tmp_path / 'b'), other)
    assert det_digest(tmp_path / 'a') == det_digest(tmp_path / 'b')
    assert tree_digest(tmp_path / 'a' / 'cls') != tree_digest(
        tmp_path / 'b' / 'cls')


def test_classification_shape_is_centred_large_and_visible(monkeypatch):
    from mmlgc.datasets import shapes
    drawn = []
    draw = shapes._draw
    monkeypatch.setattr(shapes, '_draw', lambda img, pts, color: (
        drawn.append((img.copy(), pts, color)), draw(img, pts, color)))
    cfg = ShapesConfig()
    size = cfg.cls_image_size
    labels, contrasts = [], []
    for i in range(100):
        drawn.clear()
        _, label = draw_classification_image(cfg, 'train', i)
        labels.append(label)
        (background, pts, color), = drawn
        lo, hi = pts.min(0), pts.max(0)
        assert (hi - lo).max() >= 0.5 * size - 1e-6, (i, lo, hi)
        assert lo.min() >= -1e-6 and hi.max() <= size + 1e-6, (i, lo, hi)
        assert np.abs((lo + hi) / 2 - size / 2).max() <= 0.2 * size, i
        under = background[int(lo[1]):int(np.ceil(hi[1])),
                           int(lo[0]):int(np.ceil(hi[0]))]
        contrasts.append(abs(shapes._gray(color) -
                             shapes._gray(under.reshape(-1, 3).mean(0))))
    assert sorted(set(labels)) == [0, 1, 2, 3]
    assert np.mean(np.array(contrasts) >= 48) >= 0.95, contrasts
