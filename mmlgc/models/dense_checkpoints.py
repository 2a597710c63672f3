"""Loading a dense checkpoint into a grouped model, shared by every method.

A grouped backbone, neck or head keeps the dense network's parameter names
and shapes and adds tensors only its method has (MSGC's generators, DGC's
saliency generators and buffers, FLGC's assignment logits, SG-CNN's masks).
Loading a dense checkpoint (torchvision, mmpretrain, mmdet) must keep those
tensors' initialisation and say so once, not list them as missing keys or
fail a strict load.
"""
from typing import Callable, List

from mmengine.logging import print_log
from torch import nn

from ..layers.self_grouping import GROUPING_STATE


def keep_method_state_on_dense_load(
        module: nn.Module, is_method_state: Callable[[str], bool],
        describe: Callable[[List[str]], str]) -> None:
    """Register on ``module`` a ``load_state_dict`` pre-hook: when the state
    dict is a checkpoint of this module's dense network (it holds some of the
    keys ``is_method_state`` rejects), the method's tensors it lacks keep
    their current values, and one log line says
    ``f'{type}: the checkpoint has no {describe(absent keys)}; ...'``.
    A checkpoint of something else is left to the normal missing-key
    report."""

    def hook(module, state_dict, prefix, *args):
        own = module.state_dict()
        if not any(prefix + k in state_dict
                   for k in own if not is_method_state(k)):
            return  # not a checkpoint of this module: report nothing
        absent = [
            k for k in own
            if is_method_state(k) and prefix + k not in state_dict
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
        module, lambda key: key.rpartition('.')[2] in GROUPING_STATE,
        lambda absent: 'self-grouping state for ' + plural(
            len({k.rpartition('.')[0] for k in absent}), 'layer') +
        f' ({len(absent)} tensors: masks and grouped ratios)')
