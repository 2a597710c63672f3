"""Train a detector (mmdet config) or a classifier (mmpretrain config).

Same flags and behaviour as mmdet 3.3's ``tools/train.py``; the config's
``default_scope`` decides which library's modules are used. ``import mmlgc``
registers mmlgc's modules and applies the stack fixes (mmlgc.utils.compat);
this tool also enables the checkpoint checks and atomic local writes for
every config, and logs them with the mmlgc components the config selects
(exact resume, random states, atomic checkpoints: mmlgc's configs select
them; a plain mmdet or mmpretrain config runs mmengine's own loop and hooks).
"""
import argparse
import logging

import torch
from mmengine.logging import print_log
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
        description='Train a detector or classifier')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (needs a GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
    add_runner_args(parser)
    return parse_runner_args(parser)


def enable_amp(cfg):
    if not torch.cuda.is_available():
        raise SystemExit('--amp needs a CUDA GPU (mmengine\'s '
                         'AmpOptimWrapper); none is available here.')
    optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if optim_wrapper == 'AmpOptimWrapper':
        print_log(
            'AMP training is already enabled in your config.',
            logger='current',
            level=logging.WARNING)
        return
    assert optim_wrapper == 'OptimWrapper', (
        '`--amp` is only supported when the optimizer wrapper type is '
        f'`OptimWrapper` but got {optim_wrapper}.')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def main():
    args = parse_args()
    # As this tool always has, for every config (importing mmlgc does not).
    tool_wide = enable_tool_safeguards()
    cfg = load_config(args.config, args.cfg_options, args.work_dir,
                      args.launcher)

    if args.amp:
        enable_amp(cfg)

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and \
                'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or '
                               '"auto_scale_lr.base_batch_size" in your'
                               ' configuration file.')

    # resume is determined in this priority: resume from > auto_resume
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    try:
        check_config_checkpoints(cfg)
    except (OSError, CheckpointError) as error:
        raise SystemExit(f'error: {error}')  # before any work dir or log

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    runner.logger.info(describe_runtime(cfg, tool_wide))
    runner.train()
    del runner  # the process group's last holders go with it
    release_process_group()


if __name__ == '__main__':
    main()
