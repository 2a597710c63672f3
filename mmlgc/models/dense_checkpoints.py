"""Loading a dense checkpoint into a grouped model, shared by every method.

A grouped backbone, neck or head keeps the dense network's parameter names
and shapes and adds tensors only its method has (MSGC's generators, DGC's
saliency generators and buffers, FLGC's assignment logits, SG-CNN's masks).
Loading a dense checkpoint (torchvision, mmpretrain, mmdet) must keep those
tensors' initialisation and say so once, not list them as missing keys or
fail a strict load.

Which tensors those are, each layer class declares in ``method_state``:
names of its parameters, buffers and submodules the dense layer does not
have (beside ``discrete_state``, :mod:`mmlgc.utils.model_averaging`).
"""
from typing import Callable, List, Set

from mmengine.logging import print_log
from torch import nn

#: Class attribute of a module listing its parameters, buffers and
#: submodules that the dense network does not have.
METHOD_STATE = 'method_state'


def method_state_names(model: nn.Module) -> Set[str]:
    """Full names (as in ``state_dict``, without the tensor names below a
    submodule) of what ``model``'s modules declare in ``method_state``."""
    names = set()
    for prefix, module in model.named_modules():
        for name in getattr(module, METHOD_STATE, ()):
            names.add(f'{prefix}.{name}' if prefix else name)
    return names


def is_method_state(key: str, names: Set[str]) -> bool:
    """Whether the ``state_dict`` key ``key`` is one of ``names``
    (:func:`method_state_names`) or lies below one."""
    parts = key.split('.')
    return any('.'.join(parts[:i]) in names for i in range(1, len(parts) + 1))


def keep_method_state_on_dense_load(
        module: nn.Module, describe: Callable[[List[str]], str]) -> None:
    """Register on ``module`` a ``load_state_dict`` pre-hook: when the state
    dict is a checkpoint of this module's dense network (it holds some of the
    keys that are not method state), the method's tensors (what its layers
    declare in ``method_state``) it lacks keep their current values, and one
    log line says
    ``f'{type}: the checkpoint has no {describe(absent keys)}; ...'``.
    A checkpoint of something else is left to the normal missing-key
    report."""

    def hook(module, state_dict, prefix, *args):
        own = module.state_dict()
        names = method_state_names(module)
        method = {k for k in own if is_method_state(k, names)}
        if not any(prefix + k in state_dict for k in own if k not in method):
            return  # not a checkpoint of this module: report nothing
        absent = [
            k for k in own if k in method and prefix + k not in state_dict
        ]
        if not absent:
            return
        for key in absent:
            state_dict[prefix + key] = own[key]
        print_log(
            f'{type(module).__name__}: the checkpoint has no '
            f'{describe(absent)}; they keep their initialisation (expected '
            'when starting from a dense network).',
            logger='current')

    module._register_load_state_dict_pre_hook(hook, with_module=True)


def plural(count: int, noun: str) -> str:
    return f'{count} {noun}{"s" * (count != 1)}'


def keep_dense_load_grouping_state(module: nn.Module) -> None:
    """A dense checkpoint loads into ``module`` (a backbone or head); its
    self-grouped layers stay dense, said in one log line."""
    keep_method_state_on_dense_load(
        module, lambda absent: 'self-grouping state for ' + plural(
            len({k.rpartition('.')[0] for k in absent}), 'layer') +
        f' ({len(absent)} tensors: masks and grouped ratios)')
