"""The command-line tools' argument handling and the config helpers they
share (fast; the end-to-end runs are in test_tools_e2e.py)."""
import json

import pytest
import torch

from mmlgc.utils.config import load_config


def test_amp_on_cpu_is_a_clear_error(run_tool, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('a GPU is present')
    result = run_tool('tools/train.py',
                      'configs/retinanet_r18_shapes.py', '--amp',
                      '--work-dir', str(tmp_path))
    assert result.returncode != 0
    assert '--amp needs a CUDA GPU' in result.stderr


def test_test_tool_rejects_missing_checkpoint(run_tool, tmp_path):
    result = run_tool('tools/test.py',
                      'configs/retinanet_r18_shapes.py',
                      str(tmp_path / 'nope.pth'))
    assert result.returncode != 0
    assert 'checkpoint not found' in result.stderr


def test_load_config_work_dir_priority(repo_root, tmp_path):
    path = f'{repo_root}/configs/retinanet_r18_shapes.py'
    assert load_config(path).work_dir == './work_dirs/retinanet_r18_shapes'
    assert load_config(path, work_dir=str(tmp_path)).work_dir == str(tmp_path)


def test_zero_workers_turns_persistence_off(repo_root):
    cfg = load_config(
        f'{repo_root}/configs/retinanet_r18_shapes.py',
        cfg_options={
            'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': True,
            'val_dataloader.num_workers': 2,
            'val_dataloader.persistent_workers': True,
        })
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True


def test_test_tool_rejects_non_pickle_out(run_tool, tmp_path):
    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'')
    result = run_tool('tools/test.py', 'configs/retinanet_r18_shapes.py',
                      str(ckpt), '--out', str(tmp_path / 'preds.json'))
    assert result.returncode != 0
    assert '--out must be a .pkl file' in result.stderr


@pytest.mark.parametrize('config,check_macs', [
    ('configs/pretrain/msgc_resnet18_8xb32_in1k.py', 1817.21e6),
    ('configs/pretrain/msgc_resnet50_8xb32_in1k.py', 4099.70e6),
])
def test_get_flops_reproduces_msgc_check_numbers(config, check_macs,
                                                 run_tool, tmp_path):
    """get_flops.py on an ImageNet config at 224²: the dense count (MSGC
    convention, ImageNet head included) is the paper's, and mmengine's
    analyzer traced the same model."""
    out = tmp_path / 'flops.json'
    result = run_tool('tools/analysis/get_flops.py', config, '--shape',
                      '224', '--out', str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    dense = report['backbone_mmlgc']['dense']
    assert abs(dense - check_macs) / check_macs < 1e-3
    # Freshly built: every gate opens (bias 2), generators add a little.
    assert 1 < report['backbone_mmlgc']['ratio']['mean'] < 1.01
    # The analyzer counts the masked convs dense-equivalent, plus the stem,
    # the generators and its own BN convention: within a few percent.
    assert report['analyzer']['model_flops'] == pytest.approx(dense, rel=0.03)


@pytest.mark.parametrize('method', ['msgc', 'dgc', 'flgc', 'sgcnn'])
def test_get_flops_traces_a_two_stage_detector_on_random_input(
        method, run_tool, tmp_path):
    out = tmp_path / 'flops.json'
    result = run_tool('tools/analysis/get_flops.py',
                      f'configs/{method}_faster_rcnn_r18_shapes.py', '--shape',
                      '96', '128', '--out', str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['input_sizes']['first'] == [96, 128]
    assert report['analyzer']['model_flops'] > \
        report['analyzer']['backbone_flops'] > 0


def test_get_flops_counts_flgc_connectivity(run_tool, tmp_path):
    """FLGC ResNet-50, G = 8 on the 1x1 convs, contiguous groups (exactly
    1/8 of their connections) at 224²: MACs (MSGC convention, ImageNet head
    included) and backbone parameters from the actual connectivity."""
    out = tmp_path / 'flops.json'
    result = run_tool('tools/analysis/get_flops.py',
                      'configs/pretrain/flgc_resnet50_8xb32_in1k.py',
                      '--shape', '224', '--out', str(out), '--cfg-options',
                      'model.backbone.logit_init=contiguous')
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['backbone_mmlgc']['dense'] == pytest.approx(4099.70e6,
                                                              rel=1e-6)
    assert report['backbone_mmlgc']['dynamic']['mean'] == 2559895040
    # 23508032 (ResNet-50 without FC) minus 7/8 of the 9359360 weights of
    # its bottlenecks' 1x1 convs.
    params = report['backbone_params']
    assert params['dense'] == 23508032
    assert params['actual'] == 23508032 - 9359360 * 7 // 8
