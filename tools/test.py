"""Test (and evaluate) a detector or classifier checkpoint: COCO bbox mAP for
mmdet configs (CocoMetric), accuracy for mmpretrain configs.

Same flags and behaviour as mmdet 3.3's ``tools/test.py``; the config's
``default_scope`` decides how results are dumped, drawn and test-time
augmented.
"""
import argparse
import functools
import warnings
from copy import deepcopy

from mmengine.config import ConfigDict
from mmengine.evaluator import DumpResults
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmlgc  # noqa: F401  (registers modules, applies the stack fixes)
from mmlgc.utils.checkpoint_checks import (CheckpointError,
                                           check_config_checkpoints)
from mmlgc.utils.cli import add_runner_args, parse_runner_args
from mmlgc.utils.config import load_config
from mmlgc.utils.distributed import release_process_group
from mmlgc.utils.runtime import describe_runtime, enable_tool_safeguards


def parse_args():
    parser = argparse.ArgumentParser(
        description='Test (and eval) a detector or classifier')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    add_runner_args(parser)
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (horizontal flip)')
    return parse_runner_args(parser)


def is_detection(cfg) -> bool:
    return cfg.get('default_scope', 'mmdet') == 'mmdet'


def trigger_visualization_hook(cfg, args):
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise RuntimeError(
            'VisualizationHook must be included in default_hooks. '
            'refer to usage '
            '"visualization=dict(type=\'VisualizationHook\')"')
    hook = hooks['visualization']
    if is_detection(cfg):  # mmdet's DetVisualizationHook
        hook['draw'] = True
        if args.show_dir:
            hook['test_out_dir'] = args.show_dir
    else:  # mmpretrain's VisualizationHook
        hook['enable'] = True
        if args.show_dir:
            hook['out_dir'] = args.show_dir
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    return cfg


def default_tta(cfg):
    """Horizontal-flip TTA on the config's own test pipeline, as mmdet's and
    mmpretrain's test tools set it up when a config has none."""
    test_data_cfg = cfg.test_dataloader.dataset
    while 'dataset' in test_data_cfg:
        test_data_cfg = test_data_cfg['dataset']
    pipeline = deepcopy(test_data_cfg.pipeline)
    flips = [
        dict(type='RandomFlip', prob=1., direction='horizontal'),
        dict(type='RandomFlip', prob=0., direction='horizontal')
    ]
    if is_detection(cfg):
        model = dict(
            type='DetTTAModel',
            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                         max_per_img=100))
        pack = dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                       'scale_factor', 'flip', 'flip_direction'))
    else:
        model = dict(type='mmpretrain.AverageClsScoreTTA')
        pack = pipeline[-1]
    pipeline[-1] = dict(type='TestTimeAug', transforms=[flips, [pack]])
    return model, pipeline


def dump_metric(cfg, out_file):
    if is_detection(cfg):
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=out_file)
    return DumpResults(out_file_path=out_file)


def main():
    args = parse_args()
    # As this tool always has, for every config (importing mmlgc does not).
    tool_wide = enable_tool_safeguards()
    cfg = load_config(args.config, args.cfg_options, args.work_dir,
                      args.launcher)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'--out must be a .pkl file, got {args.out}')
    cfg.load_from = args.checkpoint
    try:
        check_config_checkpoints(cfg, init_cfgs=False)
    except (OSError, CheckpointError) as error:
        raise SystemExit(f'error: {error}')  # before any work dir or log

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    if args.tta:
        model, pipeline = default_tta(cfg)
        if 'tta_model' not in cfg:
            warnings.warn('Cannot find ``tta_model`` in config, '
                          'we will set it as default.')
            cfg.tta_model = model
        if 'tta_pipeline' not in cfg:
            warnings.warn('Cannot find ``tta_pipeline`` in config, '
                          'we will set it as default.')
            cfg.tta_pipeline = pipeline
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    runner.logger.info(describe_runtime(cfg, tool_wide))
    # Evaluating needs the whole model: a checkpoint lacking tensors (or of
    # another model) is an error, not mmengine's warning and a random head.
    runner.load_checkpoint = functools.partial(runner.load_checkpoint,
                                               strict=True)

    if args.out is not None:
        runner.test_evaluator.metrics.append(dump_metric(cfg, args.out))

    runner.test()
    del runner  # the process group's last holders go with it
    release_process_group()


if __name__ == '__main__':
    main()
