"""Loads the compiled ``mmlgc._ext`` library, which registers ``mmlgc::*``.

Without it (a source checkout that was not built), every op falls back to its
pure-PyTorch reference, with one warning per process: correct, but without
the speed the kernels exist for.
"""
import importlib
import warnings

_EXT_ERROR = None
try:
    importlib.import_module('mmlgc._ext')
except ImportError as e:
    _EXT_ERROR = e

_warned = False


def ext_available() -> bool:
    return _EXT_ERROR is None


def warn_fallback() -> None:
    """Warn, once, that the reference implementations are in use."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            'mmlgc\'s compiled ops are not built (mmlgc._ext: '
            f'{_EXT_ERROR}); using the slow pure-PyTorch reference. Build '
            'them with `pip install -e . --no-build-isolation` (or `make '
            'install`) from the mmlgc checkout.',
            RuntimeWarning,
            stacklevel=3)


def no_double_backward(ctx, *grads):
    """Autograd of a backward op that has none: an explicit error instead of
    silently wrong second derivatives."""
    raise NotImplementedError(
        'mmlgc: double backward through this op is not implemented; use the '
        'reference in mmlgc.ops.reference for higher-order gradients.')
