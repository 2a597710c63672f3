"""Masked -> compact conversion, shared by every method.

A module that can run compactly implements ``switch_to_deploy()`` (fold what
can be folded, route its convs through :mod:`mmlgc.ops`) and takes a
``deploy=True`` constructor argument that builds the converted structure
directly, so a deployed state dict loads into a model built from the config
with ``deploy=True`` set on those modules.
"""
from .backbone import DeployableBackboneMixin
from .convert import deploy_model, deployable_modules, mark_deploy_in_config

__all__ = [
    'DeployableBackboneMixin', 'deploy_model', 'deployable_modules',
    'mark_deploy_in_config'
]
