from .shapes import CLASSES as SHAPES_CLASSES
from .shapes import ShapesConfig, make_shapes

__all__ = ['SHAPES_CLASSES', 'ShapesConfig', 'make_shapes']
