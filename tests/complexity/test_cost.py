"""mmlgc.complexity: MAC formulas against what the convs compute, and the
bookkeeping of cost records (deferred reports, clearing, summing, stages)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmlgc.complexity import (CostReporter, ShapeOf, clear_costs,
                              collect_costs, conv_macs, conv_output_size)
from mmlgc.complexity.stages import stage_of, stage_ratios


@pytest.mark.parametrize('size,kernel,stride,padding,dilation', [
    ((17, 23), 3, 1, 1, 1), ((17, 23), 3, 2, 1, 1), ((16, 16), 1, 2, 0, 1),
    ((31, 9), (3, 5), (2, 1), (1, 2), (2, 1)), ((224, 224), 7, 2, 3, 1)])
def test_conv_output_size_is_what_conv2d_gives(size, kernel, stride, padding,
                                                dilation):
    weight = torch.zeros((2, 1) + ((kernel, kernel) if isinstance(
        kernel, int) else kernel))
    out = F.conv2d(torch.zeros(1, 1, *size), weight, None, stride, padding,
                   dilation)
    assert conv_output_size(size, kernel, stride, padding,
                            dilation) == tuple(out.shape[2:])


def test_conv_macs_count_every_multiply_once():
    # One MAC per (output element, input channel of its group, tap),
    # counted by brute force with a conv of ones on ones.
    for groups in (1, 2, 4):
        x = torch.ones(1, 8, 6, 5)
        weight = torch.ones(12, 8 // groups, 3, 3)
        out = F.conv2d(x, weight, None, 1, 0, 1, groups)  # no padding
        assert conv_macs(8, 12, 3, out.shape[2:], groups=groups,
                         norm=False) == int(out.sum())
    # A following BN/activation costs one op per output element.
    assert conv_macs(8, 12, 3, (4, 3), norm=True) - conv_macs(
        8, 12, 3, (4, 3), norm=False) == 12 * 4 * 3


class _Layer(CostReporter, nn.Module):

    def __init__(self, dense, per_sample, deferred=False):
        super().__init__()
        self.dense, self.per_sample = dense, per_sample
        self.deferred = deferred
        self.reports = 0

    def _report(self, x):
        self.reports += 1
        self.report_cost(self.dense, self.per_sample * torch.ones(
            x.shape[0]), x.shape[0])

    def forward(self, x):
        if self.deferred:
            self.defer_cost(self._report, ShapeOf(x))
        else:
            self._report(x)
        return x


class _Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(_Layer(100, 40), _Layer(50, 50))
        self.layer2 = nn.Sequential(_Layer(200, 20, deferred=True))

    def forward(self, x):
        return self.layer2(self.layer1(x))


def test_records_sum_per_sample_and_per_stage():
    net = _Net()
    net(torch.zeros(3, 1))
    summary = collect_costs(net)
    assert summary.dense == 350
    assert summary.dynamic.tolist() == [110.0] * 3
    assert summary.ratio.item() == pytest.approx(110 / 350)
    assert summary.expected == pytest.approx(110)
    assert set(summary.per_layer) == {'layer1.0', 'layer1.1', 'layer2.0'}
    ratios = stage_ratios(summary)
    assert list(ratios) == ['layer1', 'layer2']
    assert ratios['layer1'].item() == pytest.approx(90 / 150)
    assert ratios['layer2'].item() == pytest.approx(20 / 200)


def test_deferred_report_runs_once_and_only_when_read():
    net = _Net()
    net(torch.zeros(2, 1))
    deferred = net.layer2[0]
    assert deferred.reports == 0  # inference alone never computes it
    collect_costs(net)
    collect_costs(net)
    assert deferred.reports == 1


def test_cleared_records_do_not_count_and_nothing_reported_is_an_error():
    net = _Net()
    net(torch.zeros(2, 1))
    clear_costs(net)
    with pytest.raises(RuntimeError, match='no layer that reported'):
        collect_costs(net)
    net.layer1(torch.zeros(2, 1))  # layer2 skipped: no stale record
    assert set(collect_costs(net).per_layer) == {'layer1.0', 'layer1.1'}
    with pytest.raises(RuntimeError, match='no layer that reported'):
        collect_costs(nn.Linear(2, 2))


@pytest.mark.parametrize('name,stage', [
    ('', 'stem'), ('backbone', 'stem'), ('backbone.layer2.1', 'layer2'),
    ('layer3.0.conv1', 'layer3'), ('neck.fpn_convs.0.conv', 'neck')])
def test_stage_of(name, stage):
    assert stage_of(name) == stage
