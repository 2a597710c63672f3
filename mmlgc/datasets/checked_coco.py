"""mmdet's ``CocoDataset`` with its annotations validated as they load.

mmdet 3.3 is lenient where a broken data set should stop a run:

* a box of zero or negative width/height, narrower than 1 px, with
  ``area <= 0`` or lying wholly outside its image is dropped without a word;
  a box partly outside is kept and later clipped by ``Resize``
  (``clip_object_border``), so a converter that wrote ``[x1, y1, x2, y2]``
  for ``[x, y, w, h]`` or swapped an image's width and height trains on
  wrong targets;
* an annotation file without images fails in mmengine's serialisation
  (``ValueError: need at least one array to concatenate``), or, unserialised,
  ends in CocoMetric;
* a missing image surfaces at the first epoch that reaches it (possibly hours
  in), a 0-byte one as a bare OpenCV assertion naming no file.

:class:`CheckedCocoDataset` makes each a clear error naming the annotation
file, the annotation and image ids and the file: the annotations are checked
as they load, all problems reported at once; image files are checked to exist
and be non-empty when they are local; and any error while an image goes
through the pipeline (a corrupt file, say) is re-raised naming the image.

The box rule: a box must have finite coordinates, width and height of at
least 1 px (mmdet's own threshold for dropping a box), a positive ``area`` and
lie inside its image up to ``box_tolerance`` px on each side. Boxes outside
the image are an error, not clipped: a careful user would rather learn that a
conversion is wrong than train on clipped targets, and mmdet's ``Resize``
already clips the sub-pixel overhangs that rounding produces (COCO's own
annotations have some), which the tolerance lets through.
"""
import math
import os.path as osp
from typing import List

from mmdet.datasets import CocoDataset

from mmlgc.registry import DATASETS

# Problems listed in full in one error; the others are counted.
_MAX_LISTED = 10


class DatasetError(ValueError):
    """Raised for a data set that cannot be trained or evaluated on."""


def _report(ann_file: str, problems: List[str], what: str) -> str:
    listed = '\n  '.join(problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    tail = f'\n  ... and {more} more' if more > 0 else ''
    return f'{ann_file}: {len(problems)} {what}:\n  {listed}{tail}'


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """``CocoDataset`` whose bad annotations and images are clear errors.

    Args:
        box_tolerance (float): how far (px) a box may extend past its image's
            border (rounding); farther is an error. Default 1.
        check_image_files (bool): check at load time that every image file
            exists and is not empty (local files only: skipped when
            ``backend_args`` selects another storage backend). Default True.
        *args, **kwargs: as ``CocoDataset``.
    """

    def __init__(self,
                 *args,
                 box_tolerance: float = 1.0,
                 check_image_files: bool = True,
                 **kwargs):
        if not box_tolerance >= 0:
            raise ValueError(
                f'box_tolerance must be >= 0, got {box_tolerance}')
        self.box_tolerance = box_tolerance
        self.check_image_files = check_image_files
        self._problems: List[str] = []
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        self._problems = []
        data_list = super().load_data_list()
        problems, self._problems = self._problems, []
        if problems:
            raise DatasetError(
                _report(self.ann_file, problems, 'bad annotations') +
                '\n(mmdet would drop or keep these boxes silently; fix or '
                'remove them in the annotation file)')
        if not data_list:
            raise DatasetError(
                f'{self.ann_file}: the annotation file lists no images; '
                'a data set needs at least one')
        if self.check_image_files and not self.backend_args:
            self._check_image_files(data_list)
        return data_list

    def parse_data_info(self, raw_data_info: dict):
        img_info = raw_data_info['raw_img_info']
        where = (f"image id {img_info.get('img_id')} "
                 f"({img_info.get('file_name')!r})")
        width, height = img_info.get('width'), img_info.get('height')
        if not (_is_number(width) and _is_number(height) and width > 0
                and height > 0):
            self._problems.append(f'{where}: width and height must be '
                                  f'positive, got {width} x {height}')
        else:
            for ann in raw_data_info['raw_ann_info']:
                problem = self._box_problem(ann, width, height)
                if problem:
                    self._problems.append(
                        f"annotation id {ann.get('id')} of {where}: "
                        f'{problem}')
        if self._problems:  # mmdet's parser may trip on what is reported
            return dict(instances=[])
        return super().parse_data_info(raw_data_info)

    def _box_problem(self, ann: dict, width: float, height: float):
        """What is wrong with ``ann``'s box in a ``width`` x ``height``
        image, or None."""
        bbox = ann.get('bbox')
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                and all(_is_number(v) and math.isfinite(v) for v in bbox)):
            return f'bbox must be 4 finite numbers [x, y, w, h], got {bbox}'
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            return (f'bbox {bbox} has zero or negative width or height')
        if w < 1 or h < 1:
            return (f'bbox {bbox} is narrower than 1 px (mmdet drops such '
                    'boxes)')
        area = ann.get('area')
        if not (_is_number(area) and area > 0):
            return f'area must be positive, got {area}'
        tol = self.box_tolerance
        if x < -tol or y < -tol or x + w > width + tol or (
                y + h > height + tol):
            return (f'bbox {bbox} (x1, y1, x2, y2 = {x}, {y}, {x + w}, '
                    f'{y + h}) lies outside the {width} x {height} image '
                    f'(tolerance {tol} px)')
        return None

    def _check_image_files(self, data_list: List[dict]) -> None:
        missing, empty = [], []
        for info in data_list:
            path = info['img_path']
            where = f"image id {info['img_id']}: {path}"
            if not osp.isfile(path):
                missing.append(where)
            elif osp.getsize(path) == 0:
                empty.append(where)
        problems = ([f'missing: {m}' for m in missing] +
                    [f'empty (0 bytes): {e}' for e in empty])
        if problems:
            prefix = self.data_prefix['img']
            raise FileNotFoundError(
                _report(self.ann_file, problems, 'image files missing or '
                        f'empty (under data_prefix {prefix!r})'))

    def filter_data(self) -> List[dict]:
        kept = super().filter_data()
        if not kept:
            raise DatasetError(
                f'{self.ann_file}: all {len(self.data_list)} images were '
                f'filtered out (filter_cfg={self.filter_cfg}); nothing is '
                'left to train on')
        return kept

    def prepare_data(self, idx: int):
        try:
            return super().prepare_data(idx)
        except Exception as e:
            info = self.get_data_info(idx)
            message = (f"{type(self).__name__}: image id {info.get('img_id')}"
                       f" ({info.get('img_path')}, from {self.ann_file}) "
                       f'failed in the pipeline: {type(e).__name__}: {e}')
            try:  # keep the type, so that callers' except clauses still work
                wrapped = type(e)(message)
            except Exception:
                wrapped = RuntimeError(message)
            raise wrapped from e


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
