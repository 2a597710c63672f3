import os.path as osp
import subprocess
import sys

import pytest
from helpers import REPO, data_options


@pytest.fixture(scope='session', autouse=True)
def plan_cache(tmp_path_factory):
    """Execution plans measured by the tests (and the tools they run, which
    inherit the environment) go to a cache of their own, not the user's
    ~/.cache/mmlgc/plans.json."""
    path = str(tmp_path_factory.mktemp('plans') / 'plans.json')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('MMLGC_PLAN_CACHE', path)
        yield path


@pytest.fixture
def own_plan_cache(tmp_path, monkeypatch):
    """This test's own execution-plan cache (a path not yet written) and no
    forced plan: plans are measured from scratch."""
    from mmlgc.ops import plans
    monkeypatch.setenv(plans.CACHE_ENV, str(tmp_path / 'plans.json'))
    monkeypatch.delenv(plans.PLAN_ENV, raising=False)
    plans.force_plan(None)
    yield tmp_path / 'plans.json'
    plans.force_plan(None)


@pytest.fixture(scope='session')
def repo_root():
    return REPO


@pytest.fixture(scope='session')
def tiny_shapes(tmp_path_factory):
    """A small shapes data set, shared by the tests of one session."""
    from mmlgc.datasets import ShapesConfig, make_shapes
    root = str(tmp_path_factory.mktemp('shapes'))
    cfg = ShapesConfig(num_train=16, num_val=8, num_cls_train=64,
                       num_cls_val=32)
    make_shapes(root, cfg)
    return root


@pytest.fixture(scope='session')
def run_tool():
    """Run a repository script (``tools/...``) as a user would, from the
    repository root, with this interpreter."""

    def run(*args):
        return subprocess.run([sys.executable, *args],
                              cwd=REPO,
                              capture_output=True,
                              text=True)

    return run


@pytest.fixture(scope='session')
def pretrained_backbone(tmp_path_factory, tiny_shapes, run_tool):
    """A dense ResNet-18 classifier checkpoint pretrained for one epoch on
    the tiny shapes split (mmpretrain, through tools/train.py)."""
    work_dir = str(tmp_path_factory.mktemp('pretrain'))
    result = run_tool('tools/train.py', 'configs/pretrain/resnet18_shapes.py',
                      '--work-dir', work_dir, '--cfg-options',
                      'train_cfg.max_epochs=1',
                      *data_options(tiny_shapes, 'cls'))
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    return ckpt
