"""Loads the compiled ``mmlgc._ext`` library, which registers ``mmlgc::*``."""
import importlib

_EXT_ERROR = None
try:
    importlib.import_module('mmlgc._ext')
except ImportError as e:  # not built: importing mmlgc still works
    _EXT_ERROR = e


def ext_available() -> bool:
    return _EXT_ERROR is None


def require_ext() -> None:
    if _EXT_ERROR is not None:
        raise RuntimeError(
            'mmlgc\'s compiled ops are not built (mmlgc._ext failed to import: '
            f'{_EXT_ERROR}). Build them with `pip install -e . '
            '--no-build-isolation` (or `make install`) from the mmlgc '
            'checkout.') from _EXT_ERROR
