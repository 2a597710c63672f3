"""The analysis tools on tiny data: get_flops' modules, visualize_groups'
plots, the model converters and publish_model."""
import json
import os.path as osp

import pytest
import torch
from helpers import data_options, load_tool

from mmlgc.utils.config import build_model, load_config


def _fresh_checkpoint(repo_root, config, path, prepare=None):
    """A checkpoint of ``config``'s freshly built model (``prepare`` may set
    masks/schedules first), as mmengine saves them."""
    cfg = load_config(osp.join(repo_root, config))
    model_cfg = cfg.model.copy()
    model_cfg.backbone.pop('init_cfg', None)
    torch.manual_seed(0)
    model = build_model(cfg, model_cfg)
    model.init_weights()
    if prepare is not None:
        prepare(model)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return str(path)


def test_get_flops_reports_modules_with_grouped_neck(run_tool, tmp_path):
    out = tmp_path / 'flops.json'
    result = run_tool('tools/analysis/get_flops.py',
                      'configs/msgc_retinanet_r18_msgcfpn_shapes.py',
                      '--shape', '96', '128', '--out', str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    modules = report['modules']
    assert {'backbone', 'neck', 'bbox_head'} <= set(modules)
    assert 'mmlgc' not in modules['bbox_head']  # dense head
    neck = modules['neck']['mmlgc']
    layers = {k: v for k, v in report['module_layers'].items()
              if k.startswith('neck')}
    assert 'neck.fpn_convs.0.conv' in layers
    assert sum(v['dense'] for v in layers.values()) == pytest.approx(
        neck['dense'])
    assert sum(v['dynamic']['mean'] for v in layers.values()) == \
        pytest.approx(neck['dynamic']['mean'])
    # Fresh eval gates (logit 2 >= 0) open every channel: dense plus the
    # generators and their pooling.
    assert 1 < neck['ratio'] < 1.02
    # The analyzer's neck: the same convs dense-equivalent (no norms); it
    # also counts a little mmlgc's dense figure leaves out (1.6 % of the
    # shapes configs' 64-channel neck at 96x128; under 1 % at 128).
    assert modules['neck']['analyzer_flops'] == pytest.approx(
        neck['dense'], rel=0.025)
    whole = report['whole_model']
    assert whole['dense'] == report['analyzer']['model_flops']
    assert whole['dense'] - whole['dynamic'] == pytest.approx(
        sum(m['mmlgc']['dense'] - m['mmlgc']['dynamic']['mean']
            for m in modules.values() if 'mmlgc' in m))
    # Backbone layers carry their static MACs (MSGC: none but measured).
    assert report['layers']['layer1.0']['static'] is None


@pytest.mark.parametrize('config', [
    'configs/msgc_retinanet_r18_msgcfpn_shapes.py',
    'configs/dgc_faster_rcnn_r18_dgcfpn_shapes.py',
    'configs/flgc_retinanet_r18_flgcfpn_shapes.py',
])
def test_visualize_groups_writes_the_plots(config, run_tool, tiny_shapes,
                                           repo_root, tmp_path):

    def prune(model):  # DGC: the final k, as after training
        for module in model.modules():
            if hasattr(module, 'set_progress'):
                module.set_progress(1.0)

    ckpt = _fresh_checkpoint(repo_root, config, tmp_path / 'model.pth',
                             prune)
    out_dir = tmp_path / 'plots'
    result = run_tool('tools/analysis/visualize_groups.py', config, ckpt,
                      '--out-dir', str(out_dir), '--num-images', '4',
                      '--examples', '3', '--cfg-options',
                      *data_options(tiny_shapes, 'det'))
    assert result.returncode == 0, result.stderr[-3000:]
    written = {p.name for p in out_dir.iterdir()}
    assert {'density.png', 'macs_hist.png', 'examples.png',
            'groups.json'} <= written
    summary = json.loads((out_dir / 'groups.json').read_text())
    assert summary['images'] == 4 and len(summary['examples']) == 3
    density = summary['density']
    if 'flgc' in config:
        assert {'topology_backbone_static.png',
                'topology_neck_static.png'} <= written
        assert all(0 < d <= 1 for d in density.values())
    else:
        assert 'topology_backbone.png' in written
        assert 'topology_neck.png' in written
        assert any(k.startswith('neck.fpn_convs.') for k in density)
    if 'dgc' in config:  # top-k keeps exactly keep·C per head
        assert summary['density_target']
        for name, target in summary['density_target'].items():
            assert density[name] == pytest.approx(target, abs=0.02)
    if 'msgc' in config:
        assert summary['budget_target'] == 0.5
    for name in written - {'groups.json'}:
        with open(out_dir / name, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def _converter():
    return load_tool('tools/model_converters/classifier2mmlgc.py')


def _randomise_bn(model):
    for m in model.modules():  # non-trivial statistics to carry over
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def _assert_loads_as_dense(backbone_cls, converted, dense_forward,
                           **kwargs):
    """``converted`` loads into the grouped backbone with only its own
    tensors missing, every tensor it holds is used, and with every gate
    open the backbone computes the dense classifier's features."""
    model = backbone_cls(gate_bias=100.0, **kwargs)
    own = {k for k in model.state_dict() if 'generator' not in k}
    assert set(converted) == own
    model.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = dense_forward(x)
        torch.testing.assert_close(model.eval()(x)[-1], expected, rtol=1e-4,
                                   atol=1e-4 * expected.abs().max())


def test_converter_torchvision_resnet_and_mobilenet_v2():
    import torchvision

    from mmlgc.models import MSGCMobileNetV2, MSGCResNet
    convert = _converter().convert
    resnet = torchvision.models.resnet18().eval()
    _randomise_bn(resnet)
    features = torch.nn.Sequential(*list(resnet.children())[:-2])
    converted = convert(resnet.state_dict())
    assert not any(k.startswith('fc.') for k in converted)
    _assert_loads_as_dense(MSGCResNet, converted, features, depth=18)
    mobilenet = torchvision.models.mobilenet_v2().eval()
    _randomise_bn(mobilenet)
    _assert_loads_as_dense(MSGCMobileNetV2, convert(mobilenet.state_dict()),
                           mobilenet.features, out_indices=(7, ))


def test_converter_mmpretrain_classifiers():
    from mmpretrain.models.backbones import MobileNetV2, ResNet

    from mmlgc.models import MSGCMobileNetV2, MSGCResNet
    convert = _converter().convert
    for dense, grouped, kwargs in (
            (ResNet(50, out_indices=(3, )), MSGCResNet, dict(depth=50)),
            (MobileNetV2(), MSGCMobileNetV2, dict(out_indices=(7, )))):
        dense.eval()
        _randomise_bn(dense)
        classifier = {f'backbone.{k}': v
                      for k, v in dense.state_dict().items()}
        classifier['head.fc.weight'] = torch.zeros(10, 4)
        _assert_loads_as_dense(grouped, convert(classifier),
                               lambda x: dense(x)[-1], **kwargs)


def test_converter_and_publish_model_command_lines(run_tool, tmp_path):
    import hashlib

    import torchvision
    from mmengine.runner import load_checkpoint

    from mmlgc.models import DGCResNet
    src = tmp_path / 'resnet18.pth'
    torch.save(torchvision.models.resnet18().state_dict(), src)
    dst = tmp_path / 'backbone.pth'
    result = run_tool('tools/model_converters/classifier2mmlgc.py', str(src),
                      str(dst))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'torchvision ->' in result.stdout
    # What init_cfg=Pretrained(prefix='backbone.') does.
    model = DGCResNet(depth=18, init_cfg=dict(
        type='Pretrained', checkpoint=str(dst), prefix='backbone.'))
    model.init_weights()
    torch.testing.assert_close(
        model.layer1[0].conv1.weight,
        torch.load(src)['layer1.0.conv1.weight'])

    # publish_model: optimizer gone, sha256 prefix in the name, loads.
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1),
                    optimizer=dict(state={}), message_hub=dict()), ckpt)
    result = run_tool('tools/model_converters/publish_model.py', str(ckpt),
                      str(tmp_path / 'published.pth'))
    assert result.returncode == 0, result.stderr[-3000:]
    published = [p for p in tmp_path.iterdir()
                 if p.name.startswith('published')]
    assert len(published) == 1  # no temporary file left behind
    digest = hashlib.sha256(published[0].read_bytes()).hexdigest()
    assert published[0].name == f'published-{digest[:8]}.pth'
    content = torch.load(published[0], weights_only=False)
    assert set(content) == {'state_dict', 'meta'}
    fresh = DGCResNet(depth=18)
    load_checkpoint(fresh, str(published[0]), strict=True)
    torch.testing.assert_close(fresh.layer1[0].conv1.weight,
                               model.layer1[0].conv1.weight)


def test_tensorboard_backend_logs_budget_scalars(run_tool, tiny_shapes,
                                                 repo_root, tmp_path):
    """A tiny MSGC run with TensorBoard enabled in its config writes
    ``macs_ratio``, the budget target and the per-stage ratios."""
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    config = tmp_path / 'tb.py'
    config.write_text(
        f"_base_ = '{repo_root}/configs/msgc_retinanet_r18_msgcfpn_shapes.py'"
        "\nvisualizer = dict(vis_backends=[dict(type='LocalVisBackend'), "
        "dict(type='TensorboardVisBackend')])\n"
        'default_hooks = dict(logger=dict(interval=1))\n')
    work_dir = tmp_path / 'work'
    result = run_tool(
        'tools/train.py', str(config), '--work-dir', str(work_dir),
        '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=2',
        'model.backbone.init_cfg=None', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', *data_options(tiny_shapes, 'det'))
    assert result.returncode == 0, result.stderr[-3000:]
    events = list(work_dir.glob('*/vis_data/events.out.tfevents.*'))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    tags = set(accumulator.Tags()['scalars'])
    assert {'loss', 'loss_budget', 'macs_ratio', 'macs_target',
            'macs_ratio_layer1', 'macs_ratio_layer4',
            'macs_ratio_neck'} <= tags
    ratios = [e.value for e in accumulator.Scalars('macs_ratio')]
    assert len(ratios) == 4 and all(0 < r < 1.1 for r in ratios)
    # The target anneals from 1 towards 0.5 over the first half.
    targets = [e.value for e in accumulator.Scalars('macs_target')]
    assert targets[0] == 1.0 and targets[-1] < 1.0


def _benchmark_tool():
    return load_tool('tools/analysis/benchmark_model.py')


def test_benchmark_model_times_a_grouped_neck_against_mmdet_fpn(
        run_tool, tmp_path):
    """A grouped-neck config: the dense counterpart has mmdet's FPN (not
    the grouped neck), and the neck gets its own scope."""
    tool = _benchmark_tool()
    config = 'configs/msgc_faster_rcnn_r18_msgcfpn_shapes.py'
    model, dense, _ = tool.build_from_config(config, None)
    assert type(model.neck).__name__ == 'MSGCFPN'
    assert type(dense.neck).__name__ == 'FPN'
    assert dense.neck.state_dict().keys() <= model.neck.state_dict().keys()

    out = str(tmp_path / 'bench.json')
    result = run_tool('tools/analysis/benchmark_model.py', '--config', config,
                      '--sizes', '64', '--rounds', '1', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out) as f:
        rows = json.load(f)['results']
    assert [r['scope'] for r in rows] == ['backbone', 'neck', 'detector']
    for row in rows:
        assert set(row['ms']) == {'dense', 'masked', 'deployed'}


def test_benchmark_model_batch_and_no_masked(run_tool, tmp_path):
    """With ``--no-masked`` only the dense and deployed forms are timed;
    with a batch the static masks are calibrated on one image, to the
    same MACs ratio the whole batch has."""
    out = str(tmp_path / 'bench.json')
    result = run_tool('tools/analysis/benchmark_model.py', '--backbone',
                      'resnet18', '--target', '0.5', '--sizes', '32',
                      '--batch', '2', '--rounds', '1', '--no-masked',
                      '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out) as f:
        (row, ) = json.load(f)['results']
    assert set(row['ms']) == {'dense', 'deployed'}
    assert row['batch'] == 2 and abs(row['macs_ratio'] - 0.5) < 0.05


def test_benchmark_model_detector_forms_get_the_same_head_work(
        repo_root, run_tool, tmp_path):
    """The detector scope's forms differ only in the backbone: the dense
    form can be the trained dense detector (``--dense-checkpoint``), and
    every form's heads post-process a fixed number of boxes (the RPN's
    ``max_per_img`` proposals, the RoI head's ``max_per_img`` detections)
    whatever its scores."""
    from mmlgc.utils.inputs import random_batch
    tool = _benchmark_tool()
    grouped = _fresh_checkpoint(repo_root,
                                'configs/msgc_faster_rcnn_r18_shapes.py',
                                tmp_path / 'msgc.pth')
    dense_ckpt = _fresh_checkpoint(repo_root,
                                   'configs/faster_rcnn_r18_shapes.py',
                                   tmp_path / 'dense.pth')
    model, dense, cfg = tool.build_from_config(
        'configs/msgc_faster_rcnn_r18_shapes.py', grouped,
        dense_checkpoint=dense_ckpt)
    expected = torch.load(dense_ckpt)['state_dict']
    for key, value in dense.state_dict().items():
        assert torch.equal(value, expected[key]), key

    torch.manual_seed(0)
    inputs = random_batch(cfg, 1, 96, 96)
    forms = tool.three_forms(model, dense)
    # Outputs as degenerate as the gates-open dense form's: every proposal
    # the whole image (NMS keeps one per level), every box background.
    with torch.no_grad():
        forms['dense'].rpn_head.rpn_reg.weight.zero_()
        forms['dense'].rpn_head.rpn_reg.bias.view(-1, 4)[:, 2:] = 10.
        forms['dense'].roi_head.bbox_head.fc_cls.bias[-1] = 100.

    def counts(form):
        with torch.no_grad():
            features = form.extract_feat(inputs['inputs'])
            proposals = form.rpn_head.predict(
                features, inputs['data_samples'], rescale=False)
            results = form(**inputs, mode='predict')
        return len(proposals[0]), len(results[0].pred_instances)

    full = (model.rpn_head.test_cfg.max_per_img,
            model.roi_head.test_cfg.max_per_img)
    as_configured = counts(forms['dense'])
    assert as_configured[0] < full[0] and as_configured[1] < full[1]
    for name, form in forms.items():
        assert counts(tool.same_head_work(form)) == full, name

    result = run_tool('tools/analysis/benchmark_model.py', '--config',
                      'configs/msgc_faster_rcnn_r18_shapes.py',
                      '--dense-checkpoint', dense_ckpt)
    assert result.returncode != 0
    assert '--dense-checkpoint' in result.stderr, result.stderr[-2000:]


def test_analysis_models_normalise_like_the_runner(repo_root):
    """mmpretrain configs keep mean, std and channel order in a top-level
    ``data_preprocessor`` that the Runner merges into the model: the
    analysis tools' models (get_flops.py, benchmark_model.py, study.py) get
    it too, or MSGC's masks see unnormalised images (the shapes MSGC
    counted 0.24 of the dense MACs where it trained at 0.83)."""
    cfg = load_config(osp.join(repo_root,
                               'configs/pretrain/msgc_resnet18_shapes.py'))
    model = build_model(cfg)
    image = torch.full((3, 4, 4), 255, dtype=torch.uint8)
    image[0] = 0  # BGR on disk: blue 0 becomes the last channel
    inputs = model.data_preprocessor(dict(inputs=[image]), False)['inputs']
    mean = torch.tensor(cfg.data_preprocessor.mean)
    std = torch.tensor(cfg.data_preprocessor.std)
    expected = (torch.tensor([255., 255., 0.]) - mean) / std
    torch.testing.assert_close(inputs[0, :, 0, 0], expected)
    # a model config with its own preprocessor keeps it
    model_cfg = cfg.model.copy()
    model_cfg.data_preprocessor = dict(type='ClsDataPreprocessor')
    own = build_model(cfg, model_cfg)
    assert not own.data_preprocessor._enable_normalize
