"""Deployed backbones give the same result whichever execution their plans
pick (every forced candidate vs the masked reference form), and
``tools/deploy.py --plan-sizes`` caches the plans on disk."""
import copy
import json

import pytest
import torch
from helpers import load_tool

from mmlgc.deploy import deploy_model
from mmlgc.layers.self_grouping import group_model
from mmlgc.models import DGCResNet, FLGCResNet, MSGCResNet, SGCNNResNet
from mmlgc.ops import plans


pytestmark = pytest.mark.usefixtures('own_plan_cache')


def _backbone(kind):
    torch.manual_seed(0)
    args = dict(depth=18, base_channels=16, out_indices=(3, ))
    if kind == 'msgc':
        return MSGCResNet(**args)
    if kind == 'dgc':
        model = DGCResNet(**args)
        for m in model.modules():
            if hasattr(m, 'set_progress'):
                m.set_progress(1.0)
        return model
    if kind == 'flgc':
        return FLGCResNet(**args)
    model = SGCNNResNet(**args)
    group_model(model, 0.6, seed=0)
    return model


@pytest.mark.parametrize('kind', ['msgc', 'dgc', 'sgcnn', 'flgc'])
def test_every_forced_plan_matches_the_masked_form(kind):
    model = _backbone(kind).double().eval()
    x = torch.randn(2, 3, 40, 32, dtype=torch.float64)
    with torch.no_grad():
        masked = copy.deepcopy(model)
        masked.sparse_eval(False)
        expected = masked(x)
        deploy_model(model)
        for plan in ('measure', 'kernel', 'dense', 'grouped', 'gathered',
                     'batch_union', 'gemm'):
            plans.force_plan(plan)
            for a, b in zip(expected, model(x)):
                torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10,
                                           msg=plan)


def test_deploy_tool_measures_and_caches_plans(own_plan_cache, monkeypatch):
    tool = load_tool('tools/deploy.py')
    model = _backbone('sgcnn').eval()
    deploy_model(model)
    with torch.no_grad():
        tool.measure_plans(model, ['32', '64x48'], batch=1)
    entries = json.loads(own_plan_cache.read_text())[plans.cache_section()]
    assert entries and all(e['choice'] in e['ms'] for e in entries.values())
    assert len({s.split('|')[-4] for s in entries}) >= 2  # both sizes
    # Another process (tools/test.py) reads them instead of measuring.
    monkeypatch.setattr(plans, 'cache', plans.PlanCache())
    monkeypatch.setattr(plans, 'time_interleaved', None)  # would fail
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 48))
