"""Argument checks of mmlgc's config-built components.

Every message has one form, ``'{owner}: {name}={value!r} must be ...'``, so
a bad config value names the component, the argument, its value and the
valid range; all raise ``ValueError`` (mm*'s ``KeyError`` for an unknown
ResNet depth is kept).
"""
from typing import Sequence


def _fail(owner: str, name: str, value, requirement: str):
    raise ValueError(f'{owner}: {name}={value!r} must be {requirement}')


def check_positive_int(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(owner, name, value, 'a positive integer')


def check_non_negative(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value,
                                                 (int, float)) or value < 0:
        _fail(owner, name, value, 'a number >= 0')


def check_positive(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value,
                                                 (int, float)) or value <= 0:
        _fail(owner, name, value, 'a number > 0')


def check_fraction(owner: str, name: str, value) -> None:
    """``value`` in (0, 1]: a keep ratio, a MAC budget."""
    if isinstance(value, bool) or not isinstance(
            value, (int, float)) or not 0 < value <= 1:
        _fail(owner, name, value, 'in (0, 1]')


def check_divides(owner: str, name: str, value, channels: Sequence[int],
                  what: str) -> None:
    """``value`` a positive integer dividing every count in ``channels``
    (``what`` says whose: 'the stage widths', ...)."""
    check_positive_int(owner, name, value)
    bad = sorted({c for c in channels if c % value})
    if bad:
        _fail(owner, name, value,
              f'a divisor of {what} {list(channels)} (not of {bad})')


def check_unsupported(owner: str, reason: str, **features) -> None:
    """Refuse the mm* block ``features`` that are set (``dcn``,
    ``plugins``, ``se_cfg``): ``reason`` says why ``owner`` cannot honour
    them."""
    used = sorted(k for k, v in features.items() if v)
    if used:
        raise NotImplementedError(
            f'{owner} does not support {", ".join(used)}: {reason}')


def check_resnet_stages(owner: str, num_stages: int, out_indices,
                        frozen_stages: int) -> None:
    """mmdet's ResNet asserts ``max(out_indices) < num_stages`` without a
    message and fails on ``frozen_stages > num_stages`` only at ``train()``,
    with an AttributeError."""
    for index in out_indices:
        if isinstance(index, bool) or not isinstance(
                index, int) or not 0 <= index < num_stages:
            raise ValueError(
                f'{owner}: out_indices={tuple(out_indices)!r} must be stage '
                f'indices in [0, {num_stages - 1}] (num_stages={num_stages})')
    if isinstance(frozen_stages, bool) or not isinstance(
            frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
        _fail(owner, 'frozen_stages', frozen_stages,
              f'in [-1, {num_stages}] (-1: none frozen; '
              f'num_stages={num_stages})')


def check_resnet_args(owner: str, kwargs: dict) -> list:
    """Check the mmdet ``ResNet`` arguments in ``kwargs`` (stages, indices);
    returns the stage widths (``base_channels·2^i``: every block conv of
    stage ``i`` has a multiple of it as outputs)."""
    num_stages = kwargs.get('num_stages', 4)
    if num_stages not in (1, 2, 3, 4):
        _fail(owner, 'num_stages', num_stages, 'in [1, 4]')
    check_resnet_stages(owner, num_stages,
                        kwargs.get('out_indices', (0, 1, 2, 3)),
                        kwargs.get('frozen_stages', -1))
    base = kwargs.get('base_channels', 64)
    check_positive_int(owner, 'base_channels', base)
    return [base * 2**i for i in range(num_stages)]
