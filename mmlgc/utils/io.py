"""Atomic file writing: shared by the tools, and a file backend for
mmengine that writes through it."""
import contextlib
import os
import os.path as osp
import uuid
from typing import Callable, Iterator

from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.fileio.io import backend_instances


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it
    onto ``path``: readers never see a half-written file, an interrupted or
    failed write leaves the previous ``path`` as it was, and none of the
    temporary file behind.

    The temporary name is hidden (``.name.<random>.ext``: globs such as
    ``*.pth`` do not match it) and keeps the extension, which some writers
    read (``Config.dump``); ``write`` creates it, so it gets the usual
    permissions (umask), not ``mkstemp``'s owner-only ones.
    """
    with _replaced_on_success(path) as tmp:
        write(tmp)


@contextlib.contextmanager
def _replaced_on_success(path: str) -> Iterator[str]:
    """A temporary path beside ``path``, renamed onto it if the block
    succeeds and removed either way."""
    directory, name = osp.split(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    stem, ext = osp.splitext(name)
    tmp = osp.join(directory, f'.{stem}.{uuid.uuid4().hex[:12]}{ext}')
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def _atomic_open_for_writing(path, mode, *args, **kwargs):
    with _replaced_on_success(path) as tmp:
        with open(tmp, mode, *args, **kwargs) as file:
            yield file


def atomic_open(path, mode='r', *args, **kwargs):
    """``open``, except that a file opened for writing (``'w'``) appears at
    ``path`` only once it is closed without an error."""
    if 'w' in mode:
        return _atomic_open_for_writing(path, mode, *args, **kwargs)
    return open(path, mode, *args, **kwargs)


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose writes (``put``, ``put_text``:
    ``save_checkpoint``, ``mmengine.dump``) are atomic: a temporary file
    beside the target, renamed onto it once complete.

    mmengine writes local files in place: a run killed, or a disk filling
    up, while ``save_checkpoint`` writes leaves a truncated checkpoint, over
    the previous one if it had the same name (``best_*.pth``, a re-run).
    Registered as file backend ``'mmlgc_atomic_local'``
    (``backend_args=dict(backend='mmlgc_atomic_local')``), the default of
    :class:`mmlgc.engine.AtomicCheckpointHook`; mmlgc's tools make it the
    backend of every local path (:func:`use_atomic_local_writes`).
    """

    def put(self, obj: bytes, filepath) -> None:
        with atomic_open(str(filepath), 'wb') as f:
            f.write(obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        with atomic_open(str(filepath), 'w', encoding=encoding) as f:
            f.write(obj)


ATOMIC_LOCAL_BACKEND = 'mmlgc_atomic_local'
# A new name beside mmengine's backends: selecting it is the config's choice.
register_backend(ATOMIC_LOCAL_BACKEND, AtomicLocalBackend, force=True)


def use_atomic_local_writes() -> None:
    """Make :class:`AtomicLocalBackend` the backend of local paths (prefix
    ``''``) in this process, through mmengine's ``register_backend``: every
    local file mmengine writes by its file backends is then written
    atomically, whatever the config. mmlgc's ``tools/train.py`` and
    ``tools/test.py`` call it; importing mmlgc does not."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    # Backends cached (enable_singleton) before the switch keep writing in
    # place: drop the local ones.
    for key in [k for k, v in backend_instances.items()
                if type(v) is LocalBackend]:
        del backend_instances[key]
