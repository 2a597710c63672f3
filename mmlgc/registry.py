"""mmlgc's registries: children (scope ``'mmlgc'``) of mmengine's roots.

Because they hang off mmengine's roots rather than off mmdet's or mmpretrain's,
``type='mmlgc.Foo'`` resolves from a config of either scope: mmengine imports
``mmlgc.registry`` on seeing the prefix, finds the ``mmlgc`` child of the root
and imports the ``locations`` below, which register every module. Modules that
build sub-modules by plain type names (``type='ResNet'``) get them from the
config's ``default_scope`` (mmdet or mmpretrain), as mmengine's build does.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

# Importing the package registers every mmlgc module (see mmlgc/__init__.py).
_LOCATIONS = ['mmlgc']

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, locations=_LOCATIONS)
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, locations=_LOCATIONS)
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=_LOCATIONS)
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, locations=_LOCATIONS)
OPTIMIZERS = Registry(
    'optimizer', parent=MMENGINE_OPTIMIZERS, locations=_LOCATIONS)
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS,
    locations=_LOCATIONS)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=_LOCATIONS)
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS,
    locations=_LOCATIONS)
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, locations=_LOCATIONS)
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMENGINE_DATA_SAMPLERS,
    locations=_LOCATIONS)
TRANSFORMS = Registry(
    'transform', parent=MMENGINE_TRANSFORMS, locations=_LOCATIONS)
METRICS = Registry(
    'metric', parent=MMENGINE_METRICS, locations=_LOCATIONS)
EVALUATOR = Registry(
    'evaluator', parent=MMENGINE_EVALUATOR, locations=_LOCATIONS)
