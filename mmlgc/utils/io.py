"""Atomic file writing: shared by the tools, and mmengine's local file
backend goes through it (``mmlgc.utils.compat``, fix 6)."""
import contextlib
import os
import os.path as osp
import uuid
from typing import Callable, Iterator


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


def patch_mmengine_local_writes() -> None:
    """Fix 6: mmengine's ``LocalBackend.put``/``put_text`` (every local
    checkpoint ``save_checkpoint`` writes, ``CheckpointHook`` and
    ``Runner.save_checkpoint`` included, and ``mmengine.dump``) and
    ``CheckpointHook``'s ``last_checkpoint`` write through
    :func:`atomic_open` (idempotent)."""
    from mmengine.fileio.backends import LocalBackend
    if getattr(LocalBackend.put, '_mmlgc_atomic', False):
        return

    def put(self, obj: bytes, filepath) -> None:
        with atomic_open(str(filepath), 'wb') as f:
            f.write(obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        with atomic_open(str(filepath), 'w', encoding=encoding) as f:
            f.write(obj)

    for method, original in ((put, LocalBackend.put),
                             (put_text, LocalBackend.put_text)):
        method.__doc__ = (original.__doc__ or '') + (
            '\n        mmlgc: written atomically (temporary file + rename).')
        method._mmlgc_atomic = True
    LocalBackend.put, LocalBackend.put_text = put, put_text
    # CheckpointHook writes `last_checkpoint` with the builtin open (its only
    # open): a run killed in that window left it empty, and `--resume` then
    # found no checkpoint.
    from mmengine.hooks import checkpoint_hook
    checkpoint_hook.open = atomic_open
