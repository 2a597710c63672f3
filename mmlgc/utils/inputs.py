"""Model inputs for the analysis tools: test-set batches as in testing, or
random images with the metadata a detector needs."""
from typing import Iterator

import torch
from mmengine.config import Config


def test_set_batches(cfg: Config, model, batch_size: int = 1) -> Iterator:
    """Batches of the config's test set, through its pipeline and the model's
    data preprocessor (``{'inputs', 'data_samples'}``), as in testing."""
    from mmengine.runner import Runner
    loader_cfg = cfg.test_dataloader.copy()
    loader_cfg.batch_size = batch_size
    for data in Runner.build_dataloader(loader_cfg):
        yield model.data_preprocessor(data, False)


def random_batch(cfg: Config, batch_size: int, height: int,
                 width: int) -> dict:
    """A random ``[N, 3, H, W]`` batch; for a detector config, with the image
    metadata its ``predict`` and ``tensor`` forwards read (two-stage
    detectors need it even in ``mode='tensor'``)."""
    samples = None
    if cfg.get('default_scope', 'mmdet') == 'mmdet':
        from mmdet.structures import DetDataSample
        shape = (height, width)
        samples = [
            DetDataSample(metainfo=dict(
                img_shape=shape, ori_shape=shape, pad_shape=shape,
                batch_input_shape=shape, scale_factor=(1.0, 1.0)))
            for _ in range(batch_size)
        ]
    return dict(inputs=torch.randn(batch_size, 3, height, width),
                data_samples=samples)


def forward_all(model, data: dict):
    """The whole model's ``mode='tensor'`` forward on a batch of
    :func:`test_set_batches` / :func:`random_batch`: backbone, neck and
    heads all run, so every layer that reports a cost does."""
    return model(data['inputs'], data.get('data_samples'), mode='tensor')
