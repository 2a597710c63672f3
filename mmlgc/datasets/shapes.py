"""Synthetic "shapes" data: the bundled default data set of mmlgc.

Detection split (COCO format): each image holds several coloured shapes of a
few classes on a cluttered background (colour gradient, lines, arcs,
low-contrast blobs, pixel noise), with scale variation, rotation, aspect jitter
and partial occlusion. Colour says nothing about the class, so a detector must
learn the outlines. Classification split (mmpretrain ``meta/*.txt`` format):
one object-centred shape per image, 50-90 % of it across, drawn as in the
detection split on the same kind of background with less clutter and noise
and in a colour that stands out, for pretraining the backbone the detector
starts from: a ResNet-18 learns it in the demo's two epochs (the detection
split, not the classification one, is the hard task).

Every image is drawn from its own RNG seeded by ``(seed, split, index)``, so
the output is byte-identical across runs and independent of how many images
are written.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import List, Tuple

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle', 'cross')
_SPLIT_SEED = {'train': 0, 'val': 1}
_TASK_SEED = {'det': 0, 'cls': 1}


@dataclass
class ShapesConfig:
    """Sizes and difficulty of a shapes data set.

    The defaults make a task a ResNet-18 detector learns on a 2-core CPU in a
    few minutes without acing it (small objects, occlusion, clutter).
    """
    image_size: int = 128
    num_train: int = 1000
    num_val: int = 200
    min_shapes: int = 1
    max_shapes: int = 5
    min_size: int = 12  # bounding-box side of a shape, pixels
    max_size: int = 56
    # Max fraction of a shape's box that another box may cover: occlusion
    # stays partial, so no label marks an invisible shape.
    max_overlap: float = 0.4
    clutter: int = 6  # distractor strokes and blobs per image
    noise_std: float = 8.0  # Gaussian pixel noise, 0-255 scale
    cls_image_size: int = 64
    # The classification split pretrains the detector's backbone in a CPU
    # demo's two epochs: one object-centred shape of 50-90 % of the image,
    # on the detection split's kind of background with less clutter and
    # noise, and in a colour that stands out from what lies under it.
    cls_clutter: int = 2
    cls_noise_std: float = 4.0
    num_cls_train: int = 4000
    num_cls_val: int = 800
    seed: int = 0

    def __post_init__(self):
        checks = [
            (self.image_size >= 16, 'image_size must be >= 16'),
            (self.cls_image_size >= 16, 'cls_image_size must be >= 16'),
            (1 <= self.min_shapes <= self.max_shapes,
             'need 1 <= min_shapes <= max_shapes'),
            (4 <= self.min_size <= self.max_size <= self.image_size,
             'need 4 <= min_size <= max_size <= image_size'),
            (0 <= self.max_overlap <= 1, 'max_overlap must be in [0, 1]'),
            (self.clutter >= 0 and self.noise_std >= 0,
             'clutter and noise_std must be >= 0'),
            (self.cls_clutter >= 0 and self.cls_noise_std >= 0,
             'cls_clutter and cls_noise_std must be >= 0'),
            (min(self.num_train, self.num_val, self.num_cls_train,
                 self.num_cls_val) >= 1, 'every split needs >= 1 image'),
            (self.seed >= 0, 'seed must be >= 0'),
        ]
        errors = [message for ok, message in checks if not ok]
        if errors:
            raise ValueError('impossible shapes data parameters: ' +
                             '; '.join(errors) + f' (got {self})')


def _rng(cfg: ShapesConfig, task: str, split: str, index: int):
    return np.random.default_rng(
        [cfg.seed, _TASK_SEED[task], _SPLIT_SEED[split], index])


def _random_color(rng, sat=(0.45, 1.0), val=(0.35, 1.0)) -> Tuple[int, ...]:
    """A BGR colour of random hue, saturation and value in the given ranges."""
    hsv = np.array([[[rng.uniform(0, 180),
                      rng.uniform(*sat) * 255,
                      rng.uniform(*val) * 255]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _background(rng, size: int, cfg: ShapesConfig,
                clutter: int = None) -> np.ndarray:
    """Gradient between two dull colours, then distractor strokes/blobs
    (``clutter``, default ``cfg.clutter``: at most that many, at least
    half)."""
    clutter = cfg.clutter if clutter is None else clutter
    c0 = np.array(_random_color(rng, (0.0, 0.35), (0.15, 0.7)), np.float32)
    c1 = np.array(_random_color(rng, (0.0, 0.35), (0.15, 0.7)), np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.uint8)
    for _ in range(int(rng.integers(clutter // 2, clutter + 1))):
        kind = rng.integers(3)
        color = _random_color(rng, (0.2, 0.8), (0.3, 0.9))
        if kind == 0:  # straight stroke
            p0, p1 = rng.integers(0, size, (2, 2))
            cv2.line(img, tuple(map(int, p0)), tuple(map(int, p1)), color,
                     int(rng.integers(1, 3)), cv2.LINE_AA)
        elif kind == 1:  # open arc: curved like a circle, not closed
            center = tuple(int(v) for v in rng.integers(0, size, 2))
            axes = tuple(int(v) for v in rng.integers(4, size // 3, 2))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(img, center, axes, 0, start,
                        start + rng.uniform(60, 240), color, 1, cv2.LINE_AA)
        else:  # low-contrast irregular blob
            center = rng.uniform(0, size, 2)
            n = int(rng.integers(5, 9))
            radii = rng.uniform(3, size / 10, n)
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            pts = center + np.stack(
                [radii * np.cos(angles), radii * np.sin(angles)], 1)
            blob = np.array(color, np.float32) * 0.35 + img.mean((0, 1)) * 0.65
            cv2.fillPoly(img, [np.round(pts).astype(np.int32)],
                         tuple(float(v) for v in blob), cv2.LINE_AA)
    return img


def _shape_polygon(rng, label: int, cx: float, cy: float,
                   size: float) -> np.ndarray:
    """Outline of a shape (float [P, 2]) roughly ``size`` pixels across."""
    name = CLASSES[label]
    if name == 'circle':
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * 0.5
    elif name == 'square':
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * 0.5
    elif name == 'triangle':
        t = np.array([-np.pi / 2, np.pi / 6, 5 * np.pi / 6])
        pts = np.stack([np.cos(t), np.sin(t)], 1) * 0.58
    else:  # cross: a plus sign with arms one third of the span wide
        a, b = 1 / 6, 1 / 2
        pts = np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a],
                        [a, b], [-a, b], [-a, a], [-b, a], [-b, -a],
                        [-a, -a]])
    aspect = rng.uniform(0.75, 1.33)
    pts = pts * np.array([aspect, 1 / aspect])
    theta = rng.uniform(0, 2 * np.pi) if name != 'circle' else 0.0
    rot = np.array([[np.cos(theta), -np.sin(theta)],
                    [np.sin(theta), np.cos(theta)]])
    pts = pts @ rot.T
    span = (pts.max(0) - pts.min(0)).max()
    return pts / span * size + np.array([cx, cy])


def _draw(img: np.ndarray, pts: np.ndarray, color) -> None:
    shift = 4  # sub-pixel vertices for smooth anti-aliased edges
    cv2.fillPoly(img, [np.round(pts * (1 << shift)).astype(np.int32)], color,
                 cv2.LINE_AA, shift)


def _box_coverage(a, b) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 1.0


def _add_noise(rng, img: np.ndarray, std: float) -> np.ndarray:
    if std <= 0:
        return img
    noisy = img.astype(np.float32) + rng.normal(0, std, img.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def draw_detection_image(cfg: ShapesConfig, split: str, index: int):
    """One detection image and its objects ``[(label, polygon, xyxy box)]``."""
    rng = _rng(cfg, 'det', split, index)
    size = cfg.image_size
    img = _background(rng, size, cfg)
    objects: List[Tuple[int, np.ndarray, Tuple[float, ...]]] = []
    wanted = int(rng.integers(cfg.min_shapes, cfg.max_shapes + 1))
    for _ in range(wanted * 20):  # rejection sampling for placements
        if len(objects) == wanted:
            break
        label = int(rng.integers(len(CLASSES)))
        side = rng.uniform(cfg.min_size, cfg.max_size)
        cx, cy = rng.uniform(side / 2, size - side / 2, 2)
        pts = _shape_polygon(rng, label, cx, cy, side)
        lo = np.clip(pts.min(0), 0, size)
        hi = np.clip(pts.max(0), 0, size)
        box = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
        if min(hi - lo) < 4 or any(
                _box_coverage(box, o[2]) > cfg.max_overlap for o in objects):
            continue
        _draw(img, pts, _random_color(rng))
        objects.append((label, pts, box))
    if len(objects) < cfg.min_shapes:
        # Fewer shapes than promised would silently change the task.
        raise ValueError(
            f'shapes {split} image {index}: placed only {len(objects)} of '
            f'the >= min_shapes={cfg.min_shapes} shapes in {wanted * 20} '
            f'attempts: shapes of {cfg.min_size}-{cfg.max_size} px (each '
            f'box >= 4 px a side) overlapping at most {cfg.max_overlap} do '
            f'not fit {cfg.min_shapes} at a time in {size} x {size} images. '
            'Lower min_shapes or the sizes, or raise image_size or '
            'max_overlap.')
    return _add_noise(rng, img, cfg.noise_std), objects


def _gray(color) -> float:
    b, g, r = (float(c) for c in color)
    return 0.114 * b + 0.587 * g + 0.299 * r


def draw_classification_image(cfg: ShapesConfig, split: str, index: int):
    """One image and its label: a single shape whose box is 50-90 % of the
    image across and centred to within a quarter of the free margin, drawn
    as in the detection split (same outlines, rotation, aspect jitter,
    background) but over ``cls_clutter`` distractors and ``cls_noise_std``
    noise, in a colour whose grey level differs by >= 48 from the background
    under it (the best of 8 draws where none does)."""
    rng = _rng(cfg, 'cls', split, index)
    size = cfg.cls_image_size
    img = _background(rng, size, cfg, cfg.cls_clutter)
    label = int(rng.integers(len(CLASSES)))
    side = rng.uniform(0.5, 0.9) * size
    cx, cy = size / 2 + rng.uniform(-0.25, 0.25, 2) * (size - side) / 2
    pts = _shape_polygon(rng, label, cx, cy, side)
    # centre the outline's box, not its circumcentre (triangles): inside
    pts += np.array([cx, cy]) - (pts.min(0) + pts.max(0)) / 2
    lo = np.clip(np.floor(pts.min(0)).astype(int), 0, size - 1)
    hi = np.clip(np.ceil(pts.max(0)).astype(int), lo + 1, size)
    under = _gray(img[lo[1]:hi[1], lo[0]:hi[0]].reshape(-1, 3).mean(0))
    best = None
    for _ in range(8):
        color = _random_color(rng)
        if best is None or (abs(_gray(color) - under) >
                            abs(_gray(best) - under)):
            best = color
        if abs(_gray(best) - under) >= 48:
            break
    _draw(img, pts, best)
    return _add_noise(rng, img, cfg.cls_noise_std), label


def _write_png(path: str, img: np.ndarray) -> None:
    if not cv2.imwrite(path, img):
        raise OSError(f'could not write {path}')


def write_detection_split(cfg: ShapesConfig, root: str, split: str,
                          num: int) -> str:
    """Writes ``root/{split}/*.png`` and
    ``root/annotations/instances_{split}.json``; returns the json path."""
    os.makedirs(osp.join(root, split), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for i in range(num):
        img, objects = draw_detection_image(cfg, split, i)
        file_name = f'{i:06d}.png'
        _write_png(osp.join(root, split, file_name), img)
        images.append(
            dict(id=i + 1, file_name=file_name, width=cfg.image_size,
                 height=cfg.image_size))
        for label, pts, (x0, y0, x1, y1) in objects:
            poly = np.clip(pts, 0, cfg.image_size)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=label + 1,
                    bbox=[round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                    area=round(float(cv2.contourArea(
                        poly.astype(np.float32))), 2),
                    segmentation=[[round(float(v), 2)
                                   for v in poly.reshape(-1)]],
                    iscrowd=0))
    coco = dict(
        info=dict(description='mmlgc synthetic shapes', version='1.0',
                  config=asdict(cfg)),
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(CLASSES)
        ])
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f, sort_keys=True)
    return ann_file


def write_classification_split(cfg: ShapesConfig, root: str, split: str,
                               num: int) -> str:
    """Writes ``root/{split}/*.png`` and ``root/meta/{split}.txt`` (lines of
    ``file_name label``, mmpretrain's CustomDataset format)."""
    os.makedirs(osp.join(root, split), exist_ok=True)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    lines = []
    for i in range(num):
        img, label = draw_classification_image(cfg, split, i)
        file_name = f'{i:06d}.png'
        _write_png(osp.join(root, split, file_name), img)
        lines.append(f'{file_name} {label}\n')
    ann_file = osp.join(root, 'meta', f'{split}.txt')
    with open(ann_file, 'w') as f:
        f.writelines(lines)
    with open(osp.join(root, 'meta', 'classes.txt'), 'w') as f:
        f.writelines(f'{name}\n' for name in CLASSES)
    return ann_file


def make_shapes(root: str, cfg: ShapesConfig = ShapesConfig()) -> dict:
    """Writes the whole data set under ``root`` (``det/`` and ``cls/``).

    Everything is written into a staging directory under ``root`` first and
    moved into place at the end, replacing any previous ``det/`` and
    ``cls/``: an error (parameters that cannot be met, a full disk) or an
    interruption leaves the previous data set as it was, never a mix.
    """
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.shapes-staging-', dir=root)
    try:
        det, cls = osp.join(staging, 'det'), osp.join(staging, 'cls')
        files = dict(
            det_train=write_detection_split(cfg, det, 'train', cfg.num_train),
            det_val=write_detection_split(cfg, det, 'val', cfg.num_val),
            cls_train=write_classification_split(cfg, cls, 'train',
                                                 cfg.num_cls_train),
            cls_val=write_classification_split(cfg, cls, 'val',
                                               cfg.num_cls_val))
        for name in ('det', 'cls'):
            final = osp.join(root, name)
            if osp.lexists(final):
                os.rename(final, osp.join(staging, f'previous-{name}'))
            os.rename(osp.join(staging, name), final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        key: osp.join(root, osp.relpath(path, staging))
        for key, path in files.items()
    }
