"""The process's global random number generators as one picklable state.

Python's ``random``, numpy's global ``RandomState`` and torch's CPU (and, if
present, CUDA) generators are what training draws from implicitly: MSGC's
gate noise, data augmentation (mmcv/mmdet transforms use numpy), dropout.
"""
import contextlib
import random
from typing import Iterator

import numpy as np
import torch


def get_random_state() -> dict:
    """Every global generator's state (CPU tensors and plain objects)."""
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict) -> None:
    """Restore what :func:`get_random_state` returned."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@contextlib.contextmanager
def preserved_random_state() -> Iterator[None]:
    """Whatever the block draws, the generators leave it as they entered."""
    state = get_random_state()
    try:
        yield
    finally:
        set_random_state(state)
