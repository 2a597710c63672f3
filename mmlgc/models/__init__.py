"""Backbones, heads, necks and losses of the grouped-conv methods
(registered into ``mmlgc.registry.MODELS``)."""
from .backbones import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
