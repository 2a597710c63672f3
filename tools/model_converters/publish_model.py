"""Prepare a trained checkpoint for release, as mmdet's publish_model.py.

    python tools/model_converters/publish_model.py IN.pth OUT.pth \
        [--save-keys meta state_dict]

Keeps only ``--save-keys`` (default ``meta`` and ``state_dict``: the
optimizer, message hub and param schedulers go), saves, and names the result
``OUT-<first 8 hex digits of its sha256>.pth``. Unlike mmdet's tool the file
appears atomically under its final name (written to a temporary file in the
same directory, hashed, then renamed), so a failed or interrupted run leaves
no partial checkpoint behind (the temporary file is removed).
"""
import argparse
import hashlib
import os
import os.path as osp
import tempfile

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint

import mmlgc  # noqa: F401  (applies the stack fixes)
from mmlgc.utils.checkpoint_checks import enable_checkpoint_checks


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('in_file', help='input checkpoint filename')
    parser.add_argument('out_file', help='output checkpoint filename')
    parser.add_argument('--save-keys', nargs='+', type=str,
                        default=['meta', 'state_dict'],
                        help='keys to save in the published checkpoint')
    return parser.parse_args()


def sha256sum(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def process_checkpoint(in_file: str, out_file: str,
                       save_keys=('meta', 'state_dict')) -> str:
    """Write the published checkpoint; returns its final path."""
    checkpoint = _load_checkpoint(in_file, map_location='cpu')
    for key in list(checkpoint):
        if key not in save_keys:
            print_log(f'Key `{key}` will be removed because it is not in '
                      'save_keys. If you want to keep it, please set '
                      '--save-keys.', logger='current')
            checkpoint.pop(key)
    stem = out_file[:-4] if out_file.endswith('.pth') else out_file
    directory = osp.dirname(osp.abspath(out_file))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix='.pth')
    os.close(fd)
    try:
        # The legacy format, as mmdet's tool: loadable by older torch too.
        torch.save(checkpoint, tmp, _use_new_zipfile_serialization=False)
        final = f'{stem}-{sha256sum(tmp)[:8]}.pth'
        os.replace(tmp, final)  # hashed, then renamed: atomic
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    print_log(f'The published model is saved at {final}.',
              logger='current')
    return final


def main():
    args = parse_args()
    # Bad checkpoints are clear errors in every mmlgc tool (not on import).
    enable_checkpoint_checks()
    if not osp.isfile(args.in_file):
        raise SystemExit(f'checkpoint not found: {args.in_file}')
    process_checkpoint(args.in_file, args.out_file, args.save_keys)


if __name__ == '__main__':
    main()
