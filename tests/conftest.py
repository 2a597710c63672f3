import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


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
