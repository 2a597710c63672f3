"""Discrete state under model averaging (mmengine's ``EMAHook`` with
``ExponentialMovingAverage`` and the other ``BaseAveragedModel``\\ s): what
must be copied instead of averaged. The averaged-model types that do so are
in :mod:`mmlgc.engine.averaged_models` (``ema_type='mmlgc.…'``).

mmengine 0.10.7 averages every floating-point parameter, and with
``update_buffers=True`` every floating-point buffer, while it copies the
other buffers once, at the first step, and never again. For learned
grouped convolutions both are wrong: an averaged binary mask (SG-CNN's
``mask``) is no longer binary, an averaged threshold of ``-inf`` (DGC-G's
``threshold``) is ``nan``, averaged assignment logits (FLGC) select other
groups than the trained model's, and a ``pruned_channels`` (DGC's ``k``) or
index buffer frozen at its first value makes the averaged model prune
nothing. The averaged model's weights must be read through the trained
model's connectivity.

A layer names such tensors (parameters or buffers) in its class attribute
``discrete_state``; after every averaging step, those and every tensor that
is not floating point (indices, counters) are copied from the trained model.
"""
import itertools
from typing import Set

import torch
from torch import nn

#: Class attribute of a module listing its parameters and buffers that
#: model averaging copies rather than averages.
DISCRETE_STATE = 'discrete_state'


def discrete_state_names(model: nn.Module) -> Set[str]:
    """Full names (as in ``state_dict``) of the tensors ``model``'s modules
    declare in ``discrete_state``."""
    names = set()
    for prefix, module in model.named_modules():
        for name in getattr(module, DISCRETE_STATE, ()):
            names.add(f'{prefix}.{name}' if prefix else name)
    return names


def _named_tensors(model: nn.Module):
    return itertools.chain(model.named_parameters(), model.named_buffers())


@torch.no_grad()
def copy_discrete_state(averaged: nn.Module, source: nn.Module) -> None:
    """Copy into ``averaged`` the discrete state of ``source`` (same
    architecture): the declared tensors and every non-floating one."""
    declared = discrete_state_names(source)
    targets = dict(_named_tensors(averaged))
    for name, tensor in _named_tensors(source):
        if name in declared or not tensor.is_floating_point():
            targets[name].copy_(tensor.to(targets[name].device))
