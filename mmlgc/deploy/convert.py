"""Convert a trained model (detector, classifier or bare backbone) for
deployment, and mark the matching config."""
from typing import Dict, List, Tuple

from mmengine.config import Config
from torch import nn


def deployable_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Outermost submodules (``name``, module) with ``switch_to_deploy``."""
    found = []
    for name, module in model.named_modules():
        if not hasattr(module, 'switch_to_deploy'):
            continue
        if any(name.startswith(parent + '.') or parent == ''
               for parent, _ in found):
            continue
        found.append((name, module))
    return found


def deploy_model(model: nn.Module) -> List[str]:
    """Switch every deployable module of ``model`` to its compact form (in
    place, eval mode). Returns their names; raises if there is none."""
    modules = deployable_modules(model)
    if not modules:
        raise ValueError(
            f'{type(model).__name__} has no module with switch_to_deploy(): '
            'nothing to deploy (is it built from an mmlgc backbone?)')
    model.eval()
    for _, module in modules:
        module.switch_to_deploy()
    return [name for name, _ in modules]


def mark_deploy_in_config(cfg: Config, names: List[str]) -> Config:
    """Set ``deploy=True`` on the config entries of the deployed modules
    (``backbone`` -> ``cfg.model.backbone.deploy``), so the config builds the
    compact structure the deployed checkpoint holds."""
    for name in names:
        node: Dict = cfg.model
        for part in name.split('.') if name else []:
            if part not in node:
                raise KeyError(f'deployed module {name!r} has no entry in '
                               'the config; set deploy=True on it by hand')
            node = node[part]
        node['deploy'] = True
        # A deployed checkpoint is complete: no pretrained init to apply.
        node.pop('init_cfg', None)
    return cfg
