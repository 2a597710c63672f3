"""Backbones, necks and losses of the grouped-conv methods (registered into
``mmlgc.registry.MODELS``)."""
