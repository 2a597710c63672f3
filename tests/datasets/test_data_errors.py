"""Bad data is a clear error naming what is wrong, never a silent change of
the task: broken copies of the tiny shapes set through the shapes detection
configs' datasets (``mmlgc.CheckedCocoDataset``), and impossible parameters
of the shapes generator."""
import copy
import functools
import json
import os
import os.path as osp
import shutil

import pytest

CONFIG = 'configs/faster_rcnn_r18_shapes.py'


@pytest.fixture
def broken_copy(tiny_shapes, tmp_path):
    """``break_it(split, edit)``: a copy of the tiny detection set whose
    ``split`` annotation json is passed through ``edit(coco, root)``; returns
    the root."""

    def break_it(split, edit):
        root = str(tmp_path / 'det')
        shutil.copytree(osp.join(tiny_shapes, 'det'), root)
        ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(ann_file) as f:
            coco = json.load(f)
        edit(coco, root)
        with open(ann_file, 'w') as f:
            json.dump(coco, f)
        return root

    return break_it


@functools.lru_cache(maxsize=None)
def shapes_config():
    from mmengine.config import Config
    return Config.fromfile(CONFIG)


def build_dataset(root, split):
    """The dataset of the shapes config's ``{split}_dataloader`` on
    ``root``."""
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope

    import mmlgc  # noqa: F401
    dataset_cfg = copy.deepcopy(shapes_config()[f'{split}_dataloader'].dataset)
    dataset_cfg.data_root = root + '/'
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DATASETS.build(dataset_cfg)


def first_box(**change):
    def edit(coco, root):
        coco['annotations'][0].update(change)

    return edit


def set_bbox(*bbox):
    return first_box(bbox=list(bbox))


def test_shapes_configs_use_the_checked_dataset(tiny_shapes):
    from mmlgc.datasets import CheckedCocoDataset
    for split in ('train', 'val'):
        dataset = build_dataset(osp.join(tiny_shapes, 'det'), split)
        assert isinstance(dataset, CheckedCocoDataset)
        assert len(dataset) > 0


@pytest.mark.parametrize('edit, message', [
    (set_bbox(100, 100, 60, 60), r'lies outside the 128 x 128 image'),
    (set_bbox(200, 200, 20, 20), r'lies outside'),  # mmdet drops it
    (set_bbox(-5, 10, 20, 20), r'lies outside'),
    (set_bbox(10, 10, 0, 20), r'zero or negative width or height'),
    (set_bbox(10, 10, 20, -5), r'zero or negative width or height'),
    (set_bbox(10, 10, 0.5, 20), r'narrower than 1 px'),
    (set_bbox(10, 10, float('nan'), 20), r'4 finite numbers'),
    (set_bbox(10, 10, 20), r'4 finite numbers'),
    (first_box(area=0), r'area must be positive'),
], ids=['partly-outside', 'wholly-outside', 'negative-x', 'zero-width',
        'negative-height', 'sub-pixel', 'nan', 'three-values', 'zero-area'])
@pytest.mark.parametrize('split', ['train', 'val'])
def test_bad_box_is_an_error_naming_the_annotation(broken_copy, split, edit,
                                                   message):
    from mmlgc.datasets import DatasetError
    root = broken_copy(split, edit)
    with pytest.raises(DatasetError, match=message) as error:
        build_dataset(root, split)
    text = str(error.value)
    assert f'instances_{split}.json' in text
    assert "annotation id 1 of image id 1 ('000000.png')" in text


def test_every_bad_box_is_listed_at_once(broken_copy):
    from mmlgc.datasets import DatasetError

    def edit(coco, root):
        for ann in coco['annotations'][:3]:
            ann['bbox'][2] = 0

    with pytest.raises(DatasetError, match='3 bad annotations') as error:
        build_dataset(broken_copy('train', edit), 'train')
    for ann_id in (1, 2, 3):
        assert f'annotation id {ann_id} ' in str(error.value)


def test_box_within_rounding_of_the_border_is_accepted(broken_copy):
    # Converters round: a box ending 0.5 px past the border is clipped by
    # mmdet's Resize like any other, not an error.
    root = broken_copy('train', set_bbox(100.5, 0, 28, 20))
    dataset = build_dataset(root, 'train')
    boxes = [i['bbox'] for d in range(len(dataset))
             for i in dataset.get_data_info(d)['instances']]
    assert [100.5, 0, 128.5, 20] in boxes


def test_bad_image_size_is_an_error(broken_copy):
    from mmlgc.datasets import DatasetError

    def edit(coco, root):
        coco['images'][0]['width'] = 0

    with pytest.raises(DatasetError, match='width and height must be '
                       'positive, got 0 x 128'):
        build_dataset(broken_copy('val', edit), 'val')


@pytest.mark.parametrize('split', ['train', 'val'])
def test_empty_set_is_an_error_at_load(broken_copy, split):
    # mmengine: "ValueError: need at least one array to concatenate".
    from mmlgc.datasets import DatasetError

    def edit(coco, root):
        coco['images'], coco['annotations'] = [], []

    with pytest.raises(DatasetError, match=f'instances_{split}.json: the '
                       'annotation file lists no images'):
        build_dataset(broken_copy(split, edit), split)


def test_training_set_filtered_to_nothing_is_an_error(broken_copy):
    from mmlgc.datasets import DatasetError

    def edit(coco, root):
        coco['annotations'] = []  # filter_empty_gt drops every image

    with pytest.raises(DatasetError, match='all 16 images were filtered out'):
        build_dataset(broken_copy('train', edit), 'train')


@pytest.mark.parametrize('damage, message', [
    (os.remove, 'missing: image id 1: '),
    (lambda path: open(path, 'wb').close(), r'empty \(0 bytes\): image id 1'),
])
@pytest.mark.parametrize('split', ['train', 'val'])
def test_missing_or_empty_image_is_an_error_at_load(broken_copy, split,
                                                    damage, message):
    root = broken_copy(split, lambda coco, root: damage(
        osp.join(root, split, coco['images'][0]['file_name'])))
    with pytest.raises(FileNotFoundError, match=message) as error:
        build_dataset(root, split)
    assert osp.join(root, split, '000000.png') in str(error.value)


def test_corrupt_image_is_an_error_naming_it(broken_copy):
    def truncate(coco, root):
        path = osp.join(root, 'val', coco['images'][0]['file_name'])
        with open(path, 'rb') as f:
            data = f.read()
        with open(path, 'wb') as f:
            f.write(data[:len(data) // 3])

    root = broken_copy('val', truncate)
    dataset = build_dataset(root, 'val')
    with pytest.raises(Exception, match=r'image id 1 \(.*000000\.png, from '
                       r'.*instances_val\.json\) failed in the pipeline'):
        dataset[0]
    assert dataset[1]['inputs'].shape[0] == 3  # the others load


# ---------------------------------------------------------------------------
# The shapes generator.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('params, message', [
    (dict(num_train=-1), 'every split needs >= 1 image'),
    (dict(num_val=0), 'every split needs >= 1 image'),
    (dict(image_size=8), 'image_size must be >= 16'),
    (dict(image_size=32, max_size=56), 'max_size <= image_size'),
    (dict(min_size=20, max_size=10), 'min_size <= max_size'),
    (dict(min_shapes=0), '1 <= min_shapes'),
    (dict(min_shapes=6, max_shapes=5), 'min_shapes <= max_shapes'),
    (dict(max_overlap=1.5), r'max_overlap must be in \[0, 1\]'),
    (dict(clutter=-1), 'clutter and noise_std must be >= 0'),
    (dict(seed=-1), 'seed must be >= 0'),
])
def test_generator_refuses_impossible_parameters(params, message):
    from mmlgc.datasets import ShapesConfig
    with pytest.raises(ValueError, match=message):
        ShapesConfig(**params)


def test_generator_refuses_more_shapes_than_fit_and_keeps_old_data(
        tmp_path):
    from mmlgc.datasets import ShapesConfig, make_shapes
    root = str(tmp_path / 'shapes')
    small = dict(num_train=2, num_val=1, num_cls_train=1, num_cls_val=1)
    make_shapes(root, ShapesConfig(**small))
    ann_file = osp.join(root, 'det', 'annotations', 'instances_train.json')
    with open(ann_file) as f:
        before = f.read()
    crowded = ShapesConfig(min_shapes=5, max_shapes=5, min_size=50,
                           max_size=56, max_overlap=0.0, **small)
    with pytest.raises(ValueError, match=r'train image 0: placed only \d of '
                       'the >= min_shapes=5 shapes'):
        make_shapes(root, crowded)
    # Nothing half-written: the previous set is intact, no staging left.
    with open(ann_file) as f:
        assert f.read() == before
    assert sorted(os.listdir(root)) == ['cls', 'det']
    assert sorted(os.listdir(osp.join(root, 'det', 'train'))) == [
        '000000.png', '000001.png'
    ]


def test_make_shapes_tool_reports_bad_parameters(run_tool, tmp_path):
    out = str(tmp_path / 'out')
    result = run_tool('tools/data/make_shapes.py', '--out', out,
                      '--num-train', '-3')
    assert result.returncode != 0
    assert 'make_shapes.py: error: impossible shapes data parameters: every '\
        'split needs >= 1 image' in result.stderr
    assert 'Traceback' not in result.stderr
    assert not osp.exists(osp.join(out, 'det'))
