"""What mmlgc adds to a run, for the one line the tools log about it."""
from typing import Any, List

from .checkpoint_checks import enable_checkpoint_checks
from .io import ATOMIC_LOCAL_BACKEND, use_atomic_local_writes

#: Config entries whose components change how mmengine runs (not the model).
RUNTIME_KEYS = ('train_cfg', 'val_cfg', 'test_cfg', 'default_hooks',
                'custom_hooks', 'model_wrapper_cfg')


def _mmlgc_types(node: Any, found: List[str]) -> None:
    if isinstance(node, dict):
        for key in ('type', 'ema_type'):
            value = node.get(key)
            if isinstance(value, str) and value.startswith('mmlgc.'):
                found.append(value)
        backend = (node.get('backend_args') or {}).get('backend')
        if backend == ATOMIC_LOCAL_BACKEND:
            found.append(f'backend {ATOMIC_LOCAL_BACKEND}')
        for value in node.values():
            _mmlgc_types(value, found)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _mmlgc_types(value, found)


def runtime_components(cfg) -> List[str]:
    """The mmlgc runtime components a config selects (loops, hooks,
    averaged models, model wrappers, file backends), in config order,
    without repeats."""
    found: List[str] = []
    for key in RUNTIME_KEYS:
        _mmlgc_types(cfg.get(key), found)
    return list(dict.fromkeys(found))


def describe_runtime(cfg, tool_wide: List[str]) -> str:
    """One line: the components the config selects, then what the tool
    enabled for every config (``tool_wide``)."""
    selected = runtime_components(cfg)
    return ('mmlgc runtime: config selects ' +
            (', '.join(selected) if selected else "no mmlgc component "
             "(mmengine's own loop and hooks)") + '; the tool enables ' +
            ', '.join(tool_wide))


def enable_tool_safeguards() -> List[str]:
    """What mmlgc's ``tools/train.py`` and ``tools/test.py`` enable for
    every config they run, as they always have (importing mmlgc does not):
    clear errors for bad checkpoints and atomic writes of local files.
    Returns their descriptions for :func:`describe_runtime`."""
    enable_checkpoint_checks(log=False)
    use_atomic_local_writes()
    return ['checkpoint checks (mmlgc.utils.checkpoint_checks)',
            'atomic local writes (mmlgc.utils.io.AtomicLocalBackend)']
