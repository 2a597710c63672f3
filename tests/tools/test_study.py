"""tools/analysis/study.py's bookkeeping on a tiny grid: which points run,
resume after an interruption, aggregation over seeds and the outputs. The
tools it calls (train, get_flops, benchmark) are replaced by a fake that
writes what they would, so nothing trains here."""
import csv
import json
import os
import os.path as osp

import pytest
from helpers import load_tool


@pytest.fixture
def study():
    module = load_tool('tools/analysis/study.py')
    # no config is parsed nor model built: every point initialises its
    # backbone from the dense checkpoint; plain backbones count 100 MACs
    module.pretrained_parts = lambda config: ['backbone']
    module.plain_backbone_macs = lambda point, size: 100.0
    return module


# top-1 of each finished training, by run name
TOP1 = {'dense_b1_s0': 96.0, 'dense_b1_s1': 94.0,
        'msgc_b0.5_s0': 90.0, 'msgc_b0.5_s1': 86.0,
        'flgc_G2_s0': 80.0, 'flgc_G2_s1': 84.0}
MACS = {'msgc': 0.52, 'flgc': 0.55}


class FakeTools:
    """Stands in for study.run_tool: records every call and writes the
    files the real tools would. ``fail_on``: run name whose training
    stops half-way (a checkpoint, no end) with an error, once."""

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def __call__(self, script, *args):
        self.calls.append((script, *args))
        name = osp.basename(self.arg(args, '--work-dir') or
                            osp.dirname(self.arg(args, '--out') or '.'))
        if script == 'tools/train.py':
            work_dir = self.arg(args, '--work-dir')
            os.makedirs(work_dir, exist_ok=True)
            with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
                f.write(osp.join(work_dir, 'epoch_1.pth'))
            if name == self.fail_on:
                self.fail_on = None
                raise RuntimeError('interrupted')
            log = osp.join(work_dir, '20260101_000000', 'vis_data')
            os.makedirs(log, exist_ok=True)
            with open(osp.join(log, 'scalars.json'), 'w') as f:
                f.write(json.dumps({'loss': 1.0, 'step': 1}) + '\n')
                f.write(json.dumps({'accuracy/top1': TOP1[name]}) + '\n')
        elif script == 'tools/analysis/get_flops.py':
            method = name.split('_')[0]
            flops = dict(analyzer=dict(backbone_flops=100.0))
            if method != 'dense':
                flops['backbone_mmlgc'] = dict(
                    dense=100.0, ratio=dict(mean=MACS[method]))
            with open(self.arg(args, '--out'), 'w') as f:
                json.dump(flops, f)
        elif script == 'tools/analysis/benchmark_model.py':
            method = name.split('_')[0]
            if method == 'dense':
                raise RuntimeError('no grouped form to time')
            ms = 10.0 * MACS[method] + int(name[-1])
            with open(self.arg(args, '--out'), 'w') as f:
                json.dump(dict(results=[dict(
                    scope='backbone', ms=dict(dense=20.0 + int(name[-1]),
                                              deployed=ms))]), f)
        else:
            raise AssertionError(f'unexpected tool {script}')

    @staticmethod
    def arg(args, flag):
        return args[args.index(flag) + 1] if flag in args else None

    def trained(self):
        return [osp.basename(c[c.index('--work-dir') + 1])
                for c in self.calls if c[0] == 'tools/train.py']


def tiny_args(study, tmp_path):
    data = tmp_path / 'data' / 'cls' / 'meta'
    data.mkdir(parents=True, exist_ok=True)
    (data / 'val.txt').write_text('')
    return study.parse_args([
        '--out', str(tmp_path / 'study'), '--methods', 'dense', 'msgc',
        'flgc', '--budgets', '0.5', '--groups', '2', '--seeds', '0', '1',
        '--data', str(tmp_path / 'data')])


def test_grid_runs_dense_first_and_each_point_once(study, tmp_path,
                                                   monkeypatch):
    tools = FakeTools()
    monkeypatch.setattr(study, 'run_tool', tools)
    study.Study(tiny_args(study, tmp_path)).main()
    assert tools.trained() == ['dense_b1_s0', 'dense_b1_s1', 'msgc_b0.5_s0',
                               'msgc_b0.5_s1', 'flgc_G2_s0', 'flgc_G2_s1']
    # every method point starts from its own seed's dense checkpoint
    for call in tools.calls:
        if call[0] == 'tools/train.py' and 'dense' not in call[3]:
            seed = call[3][-1]
            init = [a for a in call if 'init_cfg.checkpoint=' in a]
            assert init == ['model.backbone.init_cfg.checkpoint=' + osp.join(
                str(tmp_path), 'study', 'runs', f'dense_b1_s{seed}',
                'epoch_1.pth')]
            assert f'randomness.seed={seed}' in call

    # a second run repeats nothing
    again = FakeTools()
    monkeypatch.setattr(study, 'run_tool', again)
    study.Study(tiny_args(study, tmp_path)).main()
    assert again.calls == []


def test_interrupted_point_resumes_and_finished_ones_are_skipped(
        study, tmp_path, monkeypatch):
    tools = FakeTools(fail_on='msgc_b0.5_s1')
    monkeypatch.setattr(study, 'run_tool', tools)
    args = tiny_args(study, tmp_path)
    with pytest.raises(RuntimeError, match='interrupted'):
        study.Study(args).main()
    assert tools.trained()[-1] == 'msgc_b0.5_s1'
    assert not any('--resume' in c for c in tools.calls)

    tools2 = FakeTools()
    monkeypatch.setattr(study, 'run_tool', tools2)
    study.Study(args).main()
    # only the interrupted point and those after it train; the interrupted
    # one resumes from its checkpoint, the others start afresh
    assert tools2.trained() == ['msgc_b0.5_s1', 'flgc_G2_s0', 'flgc_G2_s1']
    resumed = [c for c in tools2.calls if '--resume' in c]
    assert [osp.basename(c[c.index('--work-dir') + 1]) for c in resumed] == [
        'msgc_b0.5_s1']
    result = json.load(open(tmp_path / 'study' / 'runs' / 'msgc_b0.5_s1' /
                            'result.json'))
    assert result['top1'] == 86.0


def test_a_finished_training_is_not_repeated_when_a_later_step_failed(
        study, tmp_path, monkeypatch):
    tools = FakeTools()

    def flops_fails(script, *args):
        if script == 'tools/analysis/get_flops.py' and 'msgc' in str(args):
            raise RuntimeError('flops failed')
        tools(script, *args)

    monkeypatch.setattr(study, 'run_tool', flops_fails)
    with pytest.raises(RuntimeError, match='flops failed'):
        study.Study(tiny_args(study, tmp_path)).main()
    tools.calls.clear()
    monkeypatch.setattr(study, 'run_tool', tools)
    study.Study(tiny_args(study, tmp_path)).main()
    assert tools.trained() == ['msgc_b0.5_s1', 'flgc_G2_s0', 'flgc_G2_s1']
    assert ('tools/analysis/get_flops.py' in
            [c[0] for c in tools.calls if 'msgc_b0.5_s0' in str(c)])


def test_aggregation_table_csv_and_plots(study, tmp_path, monkeypatch):
    monkeypatch.setattr(study, 'run_tool', FakeTools())
    study.Study(tiny_args(study, tmp_path)).main()
    out = tmp_path / 'study'
    rows = {r['method']: r for r in
            json.load(open(out / 'results.json'))['aggregate']}
    assert rows['msgc']['n'] == 2 and rows['msgc']['seeds'] == [0, 1]
    assert rows['msgc']['top1'] == pytest.approx(88.0)
    assert rows['msgc']['top1_std'] == pytest.approx(2 ** 1.5)  # sample std
    assert rows['flgc']['top1'] == pytest.approx(82.0)
    assert rows['msgc']['macs_ratio'] == pytest.approx(0.52)
    assert rows['dense']['macs_ratio'] == 1.0
    # deployed latency per seed: 10 x MACs + seed
    assert rows['msgc']['latency_ms'] == pytest.approx(5.7)
    # dense runs take the benchmark tool's dense timings (median)
    assert rows['dense']['latency_ms'] in (20.0, 21.0)
    table = (out / 'table.md').read_text()
    assert '| msgc | 0.5 | 2 | 88.0 ± 2.8 | 0.520 ± 0.000 |' in table
    with open(out / 'results.csv') as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 6
    assert {r['name'] for r in runs} == set(TOP1)
    for png in ('top1_vs_macs.png', 'top1_vs_latency.png'):
        assert (out / png).read_bytes()[:4] == b'\x89PNG'


def test_latency_added_later_to_points_trained_without(study, tmp_path,
                                                       monkeypatch):
    tools = FakeTools()
    monkeypatch.setattr(study, 'run_tool', tools)
    args = tiny_args(study, tmp_path)
    args.no_latency = True
    study.Study(args).main()
    assert not [c for c in tools.calls if 'benchmark' in c[0]]

    later = FakeTools()
    monkeypatch.setattr(study, 'run_tool', later)
    results = study.Study(tiny_args(study, tmp_path)).main()
    # only the latency runs, for the grouped points (dense has no grouped
    # form to time)
    assert [c[0] for c in later.calls] == (
        ['tools/analysis/benchmark_model.py'] * 4)
    latency = {r['name']: r['latency_ms'] for r in results}
    assert latency['msgc_b0.5_s1'] == 10.0 * MACS['msgc'] + 1
    assert latency['dense_b1_s0'] is None


def test_plain_points_are_timed_in_process(study, tmp_path, monkeypatch):
    """benchmark_model.py times only models with mmlgc layers: the thin
    and finetuned points are timed against the dense ResNet-18 here."""
    timed = []

    def fake_latency(point, size, rounds):
        timed.append((point['method'], size, rounds))
        return dict(latency_ms=2.0, dense_latency_ms=4.0)

    monkeypatch.setattr(study, 'plain_latency', fake_latency)
    args = tiny_args(study, tmp_path)
    point = dict(name='thin_b0.5_s0', method='thin', config=study.THIN_CONFIG,
                 options=[])
    runner = study.Study(args)
    os.makedirs(runner.run_dir(point))
    assert runner.latency(point, None) == dict(latency_ms=2.0,
                                               dense_latency_ms=4.0)
    runner.latency(point, None)  # kept in its benchmark.json
    assert timed == [('thin', args.image_size, args.bench_rounds)]
    # the real measurement (a fresh module: the fixture's is patched) of a
    # quarter-width ResNet-18 and the dense one (times, not compared)
    thin = dict(method='thin', config=study.THIN_CONFIG,
                options=['model.backbone.stem_channels=16',
                         'model.backbone.base_channels=16',
                         'model.head.in_channels=128'])
    measured = load_tool('tools/analysis/study.py').plain_latency(thin, 32, 3)
    assert measured['latency_ms'] > 0 and measured['dense_latency_ms'] > 0


def test_random_connectivity(study):
    import torch
    generator = torch.Generator().manual_seed(0)
    mask = study.random_connectivity(10, 8, 0.5, generator)
    # 4 contiguous filter groups (sizes 2/3/2/3 of 10), each reading its own
    # 4 of the 8 channels
    assert [int(r.sum()) for r in mask] == [4] * 10
    groups = [mask[a:b] for a, b in ((0, 2), (2, 5), (5, 8), (8, 10))]
    assert all((g == g[0]).all() for g in groups)
    assert len({tuple(g[0].tolist()) for g in groups}) > 1
    # at least one channel, whatever the density
    assert study.random_connectivity(4, 3, 0.01, generator).sum(1).eq(1).all()
    again = study.random_connectivity(10, 8, 0.5,
                                      torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


def test_mean_spread(study):
    assert study.mean_spread([1.0, None, 3.0]) == (2.0, 2 ** 0.5)
    assert study.mean_spread([5.0]) == (5.0, 0.0)
    assert study.mean_spread([None]) == (None, None)


@pytest.mark.slow
def test_real_tiny_grid(tiny_shapes, run_tool, tmp_path):
    """The real tools on the tiny shapes set: dense, a thin point (its init
    cut from the dense checkpoint), a fixed-groups point and a random-mask
    point (its masks in its init), then a rerun that trains nothing."""
    out = tmp_path / 'study'
    command = ['tools/analysis/study.py', '--out', str(out), '--methods',
               'dense', 'thin', 'fixed', 'random', '--budgets', '0.5',
               '--groups', '2',
               '--seeds', '0', '--data', tiny_shapes, '--no-latency',
               '--flops-images', '4']
    result = run_tool(*command)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[
        -3000:]
    runs = {r['name']: r for r in
            json.load(open(out / 'results.json'))['runs']}
    assert set(runs) == {'dense_b1_s0', 'thin_b0.5_s0', 'fixed_G2_s0',
                         'random_b0.5_s0'}
    assert runs['thin_b0.5_s0']['macs_ratio'] == pytest.approx(0.51, abs=0.01)
    assert 0.4 < runs['fixed_G2_s0']['macs_ratio'] < 0.8
    # the random masks arrive through the init checkpoint and stay: half
    # the block convs' connections (stem and downsample dense)
    assert 0.5 < runs['random_b0.5_s0']['macs_ratio'] < 0.65
    assert all(r['top1'] is not None for r in runs.values())
    again = run_tool(*command)
    assert again.returncode == 0
    assert 'tools/train.py' not in again.stdout
    assert again.stdout.count('done, skipped') == 4
