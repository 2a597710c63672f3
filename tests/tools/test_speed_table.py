"""tools/analysis/speed_table.py: which benchmarks it runs (resume, --skip)
and the table it builds from benchmark_model.py's records. The benchmark
itself is replaced by a fake that writes a record, so nothing is timed."""
import json

import pytest
from helpers import load_tool


@pytest.fixture
def speed_table():
    return load_tool('tools/analysis/speed_table.py')


def timing(ms, spread=0.1):
    return dict(median_ms=ms, spread=spread)


class FakeBenchmark:

    def __init__(self):
        self.calls = []

    def __call__(self, command, cwd):
        self.calls.append(command)
        arg = command.index
        size = command[arg('--sizes') + 1]
        h, w = (size.split('x') * 2)[:2]
        record = dict(scope='backbone', size=[int(h), int(w)],
                      batch=int(command[arg('--batch') + 1]),
                      macs_ratio=0.5, eta=0.75,
                      speedup=dict(dense=1.0, deployed=1.5, masked=0.8,
                                   **{'ops-only': 1.2}),
                      timings=dict(dense=timing(30.0), deployed=timing(20.0),
                                   masked=timing(37.5),
                                   **{'ops-only': timing(25.0, 0.3)}))
        with open(command[arg('--out') + 1], 'w') as f:
            json.dump(dict(allocator='pinned',
                           executions=dict(kernel=3, dense=1),
                           results=[record]), f)

        class Done:
            returncode = 0

        return Done()


def test_runs_each_point_once_and_tabulates(speed_table, tmp_path,
                                            monkeypatch):
    fake = FakeBenchmark()
    monkeypatch.setattr(speed_table.subprocess, 'run', fake)
    args = speed_table.parse_args([
        '--out', str(tmp_path), '--backbones', 'resnet50', 'dgc_resnet18',
        '--sizes', '224', '800x1216', '--batches', '1', '8', '--skip',
        '800x1216:8', '--threads', '1', '--rounds', '7', '--rounds-at',
        '800x1216:1=3'])
    text = speed_table.main(args)
    assert len(fake.calls) == 6
    assert all(c[c.index('--threads') + 1] == '1' for c in fake.calls)
    assert [c[c.index('--rounds') + 1] for c in fake.calls] == ['7'] * 4 + [
        '3'] * 2
    rows = [line for line in text.splitlines() if line.startswith('| ')][1:]
    assert len(rows) == 6
    assert rows[0] == ('| MSGC ResNet-50 | 224×224 | 1 | 0.50 | 30.0 ms ±10 % '
                       '| 0.80× (37.5 ms ±10 %) | 1.50× (20.0 ms ±10 %) '
                       '| 0.75 | 1.20× (25.0 ms ±30 %) | dense ×1, '
                       'kernel ×3 |')
    assert rows[1].startswith('| DGC ResNet-18 | 224×224 | 1 |')
    assert rows[-1].startswith('| DGC ResNet-18 | 800×1216 | 1 |')
    assert text.splitlines()[-1].startswith('Allocator: pinned (')
    assert open(tmp_path / 'table.md').read() == text

    # a second run measures nothing and gives the same table
    again = FakeBenchmark()
    monkeypatch.setattr(speed_table.subprocess, 'run', again)
    assert speed_table.main(args) == text
    assert again.calls == []


@pytest.mark.parametrize('point', ['800x1216:8', '800x1216=5', '224:1=0',
                                   '224:1=x'])
def test_a_malformed_rounds_point_is_a_clear_error(speed_table, point,
                                                   capsys):
    with pytest.raises(SystemExit):
        speed_table.parse_args(['--rounds-at', point])
    assert 'expected SIZE:BATCH=ROUNDS' in capsys.readouterr().err
