from .checked_coco import CheckedCocoDataset, DatasetError
from .shapes import CLASSES as SHAPES_CLASSES
from .shapes import ShapesConfig, make_shapes

__all__ = [
    'CheckedCocoDataset', 'DatasetError', 'SHAPES_CLASSES', 'ShapesConfig',
    'make_shapes'
]
