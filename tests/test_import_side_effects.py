"""``import mmlgc`` (hence ``custom_imports=dict(imports=['mmlgc'])``)
changes nothing of mmengine, mmcv, mmdet, mmpretrain or torch beyond what
the pinned stack needs to work at all (``mmlgc.utils.compat``), so a user's
plain config runs mmengine's own loop, hooks, averaging, file writes and
checkpoint loading; and ``mmlgc/utils`` depends on neither ``engine`` nor
``models``."""
import ast
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

# Every module-level attribute and class attribute of the stack's modules,
# by identity, and the keys of module-level dicts (tables such as mmengine's
# file backends), before and after `import mmlgc`.
SNAPSHOT = r'''
import json, sys, types
import mmengine.analysis, mmengine.fileio, mmengine.hooks, mmengine.model
import mmengine.optim, mmengine.runner, mmengine.registry
import mmcv, mmcv.ops, mmdet.engine, mmdet.models, mmdet.registry
import mmpretrain.engine, mmpretrain.models, torch

PACKAGES = ('mmengine', 'mmcv', 'mmdet', 'mmpretrain')
EXTRA = ('torch', 'torch.nn.modules.module', 'torch.serialization')

def snapshot():
    state = {}
    for name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType) or not (
                name.split('.')[0] in PACKAGES or name in EXTRA):
            continue
        for attr, value in list(vars(module).items()):
            key = f'{name}.{attr}'
            state[key] = ('id', id(value))
            if type(value) is dict:
                state[key + '{}'] = ('keys', sorted(map(str, value)))
            if isinstance(value, type) and value.__module__ == name:
                for cattr, cvalue in list(vars(value).items()):
                    state[f'{key}.{cattr}'] = ('id', id(cvalue))
    return state

before = snapshot()
import mmlgc  # noqa
after = snapshot()
changed = {}
for key, old in before.items():
    new = after.get(key)
    if new != old:
        if old[0] == 'keys' and new is not None:
            changed[key] = sorted(set(new[1]) - set(old[1]))
            if set(old[1]) - set(new[1]):
                changed[key].append('REMOVED KEYS')
        else:
            changed[key] = 'replaced'
modules = {key.rsplit('.', 1)[0] for key in before}
for key in after.keys() - before.keys():
    # A name added to a module or class that existed before the import.
    if key.rsplit('.', 1)[0] in modules:
        changed[key] = 'added'
print(json.dumps(changed))
'''

#: Everything importing mmlgc may change, and why.
EXPECTED = {
    # compat fix 1: mmengine's checkpoint loaders see torch.load with
    # weights_only=False (torch >= 2.6); nothing else does.
    'mmengine.runner.checkpoint.torch': 'replaced',
    # New names only, beside mmengine's own: the atomic file backend a
    # config selects (backend_args=dict(backend='mmlgc_atomic_local'))...
    'mmengine.fileio.backends.registry_utils.backends{}':
    ['mmlgc_atomic_local'],
    'mmengine.fileio.backends.backends{}': ['mmlgc_atomic_local'],
    'mmengine.fileio.io.backends{}': ['mmlgc_atomic_local'],
    # ...and mmengine's FLOP counting of mmlgc's own ops, which no model
    # without mmlgc layers contains.
    'mmengine.analysis.complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS{}':
    ['mmlgc::dynamic_group_conv', 'mmlgc::ragged_group_conv'],
}


@pytest.fixture(scope='module')
def changed(repo_root):
    result = subprocess.run([sys.executable, '-c', SNAPSHOT], cwd=repo_root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_changes_only_what_the_stack_needs(changed):
    """Before issue 19: also the epoch loop, the default hooks, model
    averaging, LocalBackend's writes, CheckpointHook's ``open`` and three
    checkpoint loaders (now components configs select)."""
    assert changed == EXPECTED


def test_utils_import_neither_engine_nor_models(repo_root):
    """The dependency arrow: models and engine use utils, never back."""
    utils = osp.join(repo_root, 'mmlgc', 'utils')
    offending = []
    for name in sorted(os.listdir(utils)):
        if not name.endswith('.py'):
            continue
        tree = ast.parse(open(osp.join(utils, name)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = ('.' * node.level) + (node.module or '')
                names = [target]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for target in names:
                for package in ('engine', 'models'):
                    if target in (f'..{package}', f'mmlgc.{package}') or \
                            target.startswith((f'..{package}.',
                                               f'mmlgc.{package}.')):
                        offending.append(f'{name}: {target}')
    assert not offending, offending


def _runner(cfg, tmp_path):
    from mmengine.runner import Runner
    cfg.work_dir = str(tmp_path)
    return Runner.from_cfg(cfg)


def test_plain_config_runs_mmengines_loop_and_hooks(tmp_path):
    """A user's mmdet config that imports mmlgc (for a backbone, say) gets
    mmengine's own loop and hooks, and the log says so."""
    from mmengine.config import Config
    from mmengine.hooks import CheckpointHook

    from mmlgc.utils.runtime import describe_runtime
    path = tmp_path / 'user_config.py'
    path.write_text(
        "_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'\n"
        "custom_imports = dict(imports=['mmlgc'])\n"
        "model = dict(backbone=dict(type='mmlgc.MSGCResNet', depth=18,\n"
        "                           init_cfg=None))\n")
    cfg = Config.fromfile(str(path))
    runner = _runner(cfg, tmp_path)
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert not [h for h in runner.hooks
                if type(h).__module__.startswith('mmlgc.')]
    assert type(next(h for h in runner.hooks
                     if isinstance(h, CheckpointHook))) is CheckpointHook
    assert "config selects no mmlgc component (mmengine's own" in \
        describe_runtime(cfg, ['x'])


def test_mmlgc_config_runs_mmlgcs_runtime(repo_root, tmp_path):
    from mmengine.config import Config

    from mmlgc.engine import (AtomicCheckpointHook, CheckpointChecksHook,
                              RandomStateHook)
    from mmlgc.utils.runtime import describe_runtime
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs/msgc_retinanet_r18_shapes.py'))
    runner = _runner(cfg, tmp_path)
    kinds = {type(h) for h in runner.hooks}
    assert {AtomicCheckpointHook, CheckpointChecksHook,
            RandomStateHook} <= kinds
    line = describe_runtime(cfg, ['checkpoint checks'])
    assert line.startswith(
        'mmlgc runtime: config selects mmlgc.ExactResumeEpochBasedTrainLoop,')
