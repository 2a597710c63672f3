"""mmlgc: learnable grouped convolutions for OpenMMLab detection and
classification.

Importing the package applies the stack fixes (``mmlgc.utils.compat``: what
mmengine 0.10.7 needs on torch >= 2.6, nothing else), loads the compiled ops
and registers every module into the ``mmlgc`` scope, so
``custom_imports=dict(imports=['mmlgc'])`` plus ``type='mmlgc.X'`` works from
mmdet and mmpretrain configs. mmlgc's runtime behaviour (exact resume, atomic
checkpoints, checkpoint checks, EMA of discrete state) is in components that
configs select (``mmlgc.engine``).
"""
from .utils import compat

compat.apply()

from . import complexity, datasets, engine, layers, models, ops  # noqa: E402,F401,E501
from .version import __version__  # noqa: E402

__all__ = ['__version__', 'compat', 'datasets', 'models', 'ops']
