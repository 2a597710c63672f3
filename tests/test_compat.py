"""Each fix in mmlgc.utils.compat, and a test that fails without it; the
atomic writes that mmlgc's configs and tools select (mmlgc.utils.io)."""
import contextlib
import importlib.util
import os
import os.path as osp
import pickle
import resource
import signal
import stat

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint

from mmlgc.utils import compat


@pytest.fixture
def mmengine_style_checkpoint(tmp_path):
    """A checkpoint holding what mmengine's runner saves besides tensors."""
    hub = MessageHub.get_instance('mmlgc_compat_test')
    hub.update_scalar('train/loss', 1.0)
    path = str(tmp_path / 'epoch_1.pth')
    save_checkpoint(
        dict(
            meta=dict(epoch=1, iter=10, seed=np.int64(0)),
            state_dict=dict(weight=torch.ones(2)),
            message_hub=hub.state_dict()), path)
    return path


def test_mmengine_loads_its_checkpoints_on_torch_2_6_plus(
        mmengine_style_checkpoint):
    ckpt = _load_checkpoint(mmengine_style_checkpoint, map_location='cpu')
    assert ckpt['meta']['epoch'] == 1
    assert torch.equal(ckpt['state_dict']['weight'], torch.ones(2))


def test_without_the_fix_torch_refuses_mmengine_checkpoints(
        mmengine_style_checkpoint, monkeypatch):
    monkeypatch.setattr(mmengine_checkpoint, 'torch', torch)
    with pytest.raises(pickle.UnpicklingError, match='weights_only'):
        _load_checkpoint(mmengine_style_checkpoint, map_location='cpu')


def test_pretrained_init_cfg_loads_mmengine_checkpoint(tmp_path):
    from mmengine.model import BaseModule
    src = torch.nn.Sequential(torch.nn.Linear(2, 2))
    path = str(tmp_path / 'backbone.pth')
    save_checkpoint(
        dict(meta=dict(seed=np.int64(3)),
             state_dict={'backbone.layers.' + k: v
                         for k, v in src.state_dict().items()}), path)

    class Net(BaseModule):

        def __init__(self):
            super().__init__(
                init_cfg=dict(
                    type='Pretrained', checkpoint=path, prefix='backbone.'))
            self.layers = torch.nn.Sequential(torch.nn.Linear(2, 2))

        def forward(self, x):
            return self.layers(x)

    net = Net()
    net.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(net.layers.state_dict()[k], v)


def test_the_fix_leaves_torch_load_safe_elsewhere(
        mmengine_style_checkpoint):
    with pytest.raises(pickle.UnpicklingError):
        torch.load(mmengine_style_checkpoint)


def test_apply_is_idempotent():
    compat.apply()
    first = mmengine_checkpoint.torch
    compat.apply()
    assert mmengine_checkpoint.torch is first
    assert mmengine_checkpoint.torch.Tensor is torch.Tensor


@pytest.mark.parametrize('module, message', [
    ('pkg_resources', 'setuptools<82'),
    ('mmcv._ext', 'compiled ops'),
])
def test_missing_module_is_a_clear_error(monkeypatch, module, message):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, 'find_spec', lambda name, *a: None
        if name == module else real_find_spec(name, *a))
    with pytest.raises(compat.StackError, match=message):
        compat.check_stack()


@pytest.mark.parametrize('version', ['2.2.0', '1.7.2'])
def test_mmcv_version_mmdet_rejects_is_a_clear_error(monkeypatch, version):
    import mmcv
    monkeypatch.setattr(mmcv, '__version__', version)
    with pytest.raises(compat.StackError, match='mmcv < 2.2.0'):
        compat.check_stack()


def test_mmdet_and_mmpretrain_bases_resolve(repo_root):
    """``mmdet::``/``mmpretrain::`` bases need pkg_resources
    (setuptools<82)."""
    from mmengine.config import Config
    det = Config.fromfile(f'{repo_root}/configs/retinanet_r18_shapes.py')
    assert det.model.type == 'RetinaNet' and det.default_scope == 'mmdet'
    cls = Config.fromfile(f'{repo_root}/configs/pretrain/resnet18_shapes.py')
    assert cls.model.type == 'ImageClassifier'
    assert cls.default_scope == 'mmpretrain'


def test_coco_metric_runs_on_pinned_numpy(tiny_shapes):
    """numpy 2.4 removed names some mm* modules use; CocoMetric (the
    detection path) must work on the pinned numpy: ground truth scored as
    predictions gives mAP 1."""
    from mmdet.evaluation import CocoMetric
    from pycocotools.coco import COCO
    ann_file = f'{tiny_shapes}/det/annotations/instances_val.json'
    coco = COCO(ann_file)
    metric = CocoMetric(ann_file=ann_file, metric='bbox')
    metric.dataset_meta = dict(
        classes=('circle', 'square', 'triangle', 'cross'))
    samples = []
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        boxes = torch.tensor([[a['bbox'][0], a['bbox'][1],
                               a['bbox'][0] + a['bbox'][2],
                               a['bbox'][1] + a['bbox'][3]] for a in anns])
        samples.append(
            dict(
                img_id=img_id,
                ori_shape=(128, 128),
                pred_instances=dict(
                    bboxes=boxes.reshape(-1, 4),
                    scores=torch.ones(len(anns)),
                    labels=torch.tensor(
                        [a['category_id'] - 1 for a in anns],
                        dtype=torch.long))))
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)


@contextlib.contextmanager
def disk_full_beyond(nbytes):
    """Writes past ``nbytes`` of any file fail with ``OSError`` (EFBIG), as
    on a full disk: a write interrupted halfway, whoever writes."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)


ATOMIC = dict(backend='mmlgc_atomic_local')


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path):
    """Through the atomic backend (AtomicCheckpointHook's default)."""
    path = str(tmp_path / 'best_accuracy.pth')
    save_checkpoint(dict(state_dict=dict(weight=torch.zeros(4))), path,
                    backend_args=ATOMIC)
    with open(path, 'rb') as f:
        previous = f.read()
    with disk_full_beyond(len(previous) + 512):
        with pytest.raises(OSError):
            save_checkpoint(dict(state_dict=dict(weight=torch.ones(10000))),
                            path, backend_args=ATOMIC)
    with open(path, 'rb') as f:
        assert f.read() == previous
    assert os.listdir(tmp_path) == ['best_accuracy.pth']  # no temp file
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_last_checkpoint_names_only_complete_checkpoints(tmp_path):
    """The second checkpoint of a run fails halfway (disk full): the run
    stops, ``last_checkpoint`` still names the first, complete one, and no
    partial file is left to be resumed from."""
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Linear(BaseModel):

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(64, 64)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            out = self.linear(torch.stack(inputs))
            return dict(loss=out.square().mean()) if mode == 'loss' else out

    class DiskFullsAtSecondCheckpoint(Hook):

        def before_save_checkpoint(self, runner, checkpoint):
            if runner.iter == 1:
                stack.enter_context(disk_full_beyond(1024))

    work_dir = str(tmp_path / 'work_dir')
    runner = Runner(
        model=Linear(),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=[dict(inputs=torch.randn(64)) for _ in range(4)],
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2),
        train_cfg=dict(by_epoch=False, max_iters=4),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(
            checkpoint=dict(type='mmlgc.AtomicCheckpointHook', interval=1,
                            by_epoch=False)),
        custom_hooks=[DiskFullsAtSecondCheckpoint()])
    with contextlib.ExitStack() as stack, pytest.raises(OSError):
        runner.train()
    # The run raised inside its loop: its MessageHub, still current, says
    # 'train' (after_train never ran), which later tests of backbones outside
    # a Runner would read as a Runner training them.
    MessageHub.get_instance('mmlgc_compat_test_after_failed_run')
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        last = f.read()
    assert last == osp.join(work_dir, 'iter_1.pth')
    assert _load_checkpoint(last)['meta']['iter'] == 1
    # No partial iter_2.pth, no temporary file.
    assert sorted(f for f in os.listdir(work_dir)
                  if f.endswith('.pth') or f.startswith('.')) == ['iter_1.pth']


def test_last_checkpoint_file_is_replaced_atomically(tmp_path):
    """mmengine's CheckpointHook writes ``last_checkpoint`` with
    ``open(.., 'w')``; AtomicCheckpointHook with ``atomic_open``: a write
    failing halfway (here: a non-str) keeps the old name, not an empty file
    that ``--resume`` reads as no checkpoint."""
    from mmlgc.utils.io import atomic_open
    path = tmp_path / 'last_checkpoint'
    path.write_text('work_dir/epoch_1.pth')
    with pytest.raises(TypeError):
        with atomic_open(str(path), 'w') as f:
            f.write(2)
    assert path.read_text() == 'work_dir/epoch_1.pth'
    assert os.listdir(tmp_path) == ['last_checkpoint']
    with atomic_open(str(path), 'w') as f:
        f.write('work_dir/epoch_2.pth')
    assert path.read_text() == 'work_dir/epoch_2.pth'


def test_atomic_checkpoint_hook_keeps_explicit_backends():
    """The atomic backend is only a default, for local ``out_dir``\\ s."""
    from mmlgc.engine import AtomicCheckpointHook
    assert AtomicCheckpointHook().backend_args == ATOMIC
    assert AtomicCheckpointHook(
        backend_args=dict(backend='local')).backend_args == dict(
            backend='local')
    assert AtomicCheckpointHook(out_dir='s3://bucket/run').backend_args is None


def test_tools_make_every_local_write_atomic(tmp_path):
    """``use_atomic_local_writes`` (mmlgc's train and test tools): a plain
    ``save_checkpoint`` or ``mmengine.dump`` is atomic too."""
    from mmengine.fileio import get_file_backend
    from mmengine.fileio.backends import LocalBackend
    from mmengine.fileio.backends import registry_utils

    from mmlgc.utils.io import AtomicLocalBackend, use_atomic_local_writes
    saved = (dict(registry_utils.backends),
             dict(registry_utils.prefix_to_backends))
    try:
        assert type(get_file_backend(str(tmp_path))) is LocalBackend
        use_atomic_local_writes()
        assert type(get_file_backend(str(tmp_path))) is AtomicLocalBackend
    finally:
        for table, old in zip((registry_utils.backends,
                               registry_utils.prefix_to_backends), saved):
            table.clear()
            table.update(old)
    assert type(get_file_backend(str(tmp_path))) is LocalBackend


def test_atomic_write_keeps_the_previous_file_when_the_writer_fails(
        tmp_path):
    """``tools/deploy.py``, ``tools/sgcnn_group.py`` and
    ``tools/model_converters`` write through ``atomic_write``: a writer
    failing halfway (here ``torch.save`` of an unpicklable object, after the
    first bytes) leaves the previous output as it was and nothing else."""
    from mmlgc.utils.io import atomic_write
    path = str(tmp_path / 'deployed.pth')
    atomic_write(path, lambda tmp: torch.save(dict(w=torch.zeros(2)), tmp))
    with open(path, 'rb') as f:
        previous = f.read()
    with pytest.raises(Exception):
        atomic_write(path, lambda tmp: torch.save(
            dict(w=torch.ones(1000), fn=lambda: None), tmp))
    with open(path, 'rb') as f:
        assert f.read() == previous
    assert os.listdir(tmp_path) == ['deployed.pth']
