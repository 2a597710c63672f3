"""Clear errors for bad checkpoints, on every path mmengine loads them by.

``load_from``, ``--resume``, ``init_cfg=dict(type='Pretrained', ...)``,
``tools/test.py CONFIG CKPT`` and ``tools/deploy.py`` all end in two places
of ``mmengine.runner.checkpoint``: ``CheckpointLoader.load_checkpoint``
(read the file) and ``load_state_dict`` (copy it into the model).
:func:`enable_checkpoint_checks` wraps the first and replaces the second,
so each path reports:

* a missing file: ``FileNotFoundError`` naming the absolute path;
* an empty, truncated or corrupt file (zip CRC mismatch) or one that is not
  a checkpoint: :class:`CheckpointError` naming the file, its size and what
  is wrong, instead of miniz/pickle internals (or, for a corrupt tensor
  payload, no error at all);
* a checkpoint of another model: :class:`CheckpointMismatchError`, a short
  summary (counts, then the first few keys with checkpoint vs model
  shapes) instead of mmengine's warning, after which training went on from
  a random initialisation.

The rule for "another model" (``load_state_dict`` with ``strict=False``,
i.e. ``load_from``, ``--resume``, ``Pretrained``). It looks at the part a
checkpoint must provide: the ``backbone`` of a model that has one, else the
whole module (a backbone or neck under ``Pretrained``). That part must

* have no tensor whose shape differs from the checkpoint's (a ResNet-50
  checkpoint in a ResNet-18: 1x1 vs 3x3 convs, 256 vs 64 channels), and
* find at least :data:`MIN_FOUND` of its tensors in the checkpoint
  (a MobileNetV2 checkpoint in a ResNet finds none; a ResNet-18 one in a
  ResNet-34 about half). Tensors a load pre-hook kept at the model's own
  values (below) count neither way.

Tensors only a method has (MSGC generators, DGC saliency state, FLGC logits,
SG-CNN masks) are filled in by :mod:`mmlgc.models.dense_checkpoints` before
this check when the checkpoint is of the dense network, so a dense ResNet
checkpoint in any method backbone passes. Heads may disagree (fine-tuning a
COCO detector on fewer classes changes the classifier shapes): that stays
mmengine's warning. With ``strict=True`` (``tools/test.py``,
``tools/deploy.py``: evaluating needs the whole model) every missing,
unexpected or reshaped tensor is an error.
"""
import logging
import os
import os.path as osp
import zipfile
from collections import OrderedDict
from typing import Dict, List, Tuple

from mmengine.logging import print_log
from torch.nn.modules.module import _IncompatibleKeys

#: Least fraction of the checked part's tensors a checkpoint must provide.
MIN_FOUND = 0.75
#: How many keys of each kind a summary lists.
SHOWN = 5


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read (empty, truncated, corrupt, or not a
    checkpoint)."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not hold the model it is loaded into."""


#: The checkpoint ``CheckpointLoader`` read last: the one the next
#: ``load_state_dict`` loads on every mmengine path (error messages only).
_last_read = {'path': None}

_ZIP_MAGIC = b'PK\x03\x04'


def _size(path: str) -> str:
    return f'{os.path.getsize(path):,} bytes'


def check_checkpoint_file(path: str, verify_crc: bool = True) -> None:
    """Raise if the local file ``path`` is no readable checkpoint: missing
    (``FileNotFoundError``), empty, truncated, or with a tensor record whose
    CRC does not match (:class:`CheckpointError`). ``verify_crc`` reads the
    whole file (torch itself does not check the CRCs it writes: a damaged
    payload would load as wrong weights)."""
    path = osp.abspath(osp.expanduser(path))
    if not osp.exists(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint {path} is not a file')
    if os.path.getsize(path) == 0:
        raise CheckpointError(
            f'checkpoint {path} is empty (0 bytes): an interrupted save or '
            'copy? Save or download it again.')
    with open(path, 'rb') as file:
        magic = file.read(4)
    if magic != _ZIP_MAGIC:
        return  # torch's legacy format, or not a checkpoint: torch.load says
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip() if verify_crc else None
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f'checkpoint {path} ({_size(path)}) is truncated or corrupt: '
            f'{error} (a torch zip archive without its end, e.g. an '
            'interrupted save or copy). Save or download it again.') from None
    if bad is not None:
        raise CheckpointError(
            f'checkpoint {path} ({_size(path)}) is corrupt: record {bad!r} '
            'fails its CRC check (the file changed after it was written). '
            'Save or download it again.')


def _is_local(filename: str) -> bool:
    return '://' not in filename and not filename.startswith(
        ('s3:', 'pavi:'))


def checked_load_checkpoint(loader_cls, original, filename,
                            map_location=None, logger='current'):
    """mmengine's ``CheckpointLoader.load_checkpoint`` with local files
    checked first and unreadable ones reported by name."""
    _last_read['path'] = (osp.abspath(osp.expanduser(filename))
                          if _is_local(filename) else filename)
    if not _is_local(filename):
        return original(loader_cls, filename, map_location, logger)
    check_checkpoint_file(filename)
    try:
        checkpoint = original(loader_cls, filename, map_location, logger)
    except FileNotFoundError:
        raise
    except Exception as error:
        if 'Weights only load failed' in str(error):
            raise  # torch's safe loading, not a bad file (compat fix 1)
        path = osp.abspath(osp.expanduser(filename))
        raise CheckpointError(
            f'cannot read checkpoint {path} ({_size(path)}): it is not a '
            f'PyTorch checkpoint or it is corrupt ({type(error).__name__}: '
            f'{error})') from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'checkpoint {filename} holds a {type(checkpoint).__name__}, '
            'not a state dict')
    return checkpoint


def checked_load_with_prefix(prefix: str, filename: str,
                             map_location=None) -> Dict:
    """mmengine's ``_load_checkpoint_with_prefix`` (``Pretrained`` with a
    ``prefix``), saying which prefixes the checkpoint has when it lacks
    ``prefix``."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    checkpoint = mmengine_checkpoint._load_checkpoint(filename, map_location)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'checkpoint {filename} holds a {type(checkpoint).__name__}, '
            'not a state dict')
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not prefix.endswith('.'):
        prefix += '.'
    selected = {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix)
    }
    if not selected:
        heads = sorted({k.split('.', 1)[0] + '.' for k in state_dict})
        raise CheckpointMismatchError(
            f'checkpoint {filename} has no key with prefix {prefix!r} '
            f"(init_cfg=dict(type='Pretrained', prefix={prefix!r})); its "
            f'{len(state_dict)} keys start with {_first(heads)}. A bare '
            "backbone checkpoint needs no prefix (prefix=None).")
    return selected


def _first(items: List[str], count: int = SHOWN) -> str:
    shown = ', '.join(items[:count])
    more = len(items) - count
    return shown + (f', ... ({more} more)' if more > 0 else '') or 'nothing'


def _shape(shape) -> str:
    return str(list(shape))


class LoadReport:
    """What a state dict load found: missing and unexpected keys, tensors
    whose shapes differ (key, checkpoint shape, model shape), and the model's
    own keys."""

    def __init__(self, model_keys: List[str]):
        self.model_keys = model_keys
        self.missing: List[str] = []
        self.unexpected: List[str] = []
        self.errors: List[str] = []
        self.mismatched: List[Tuple[str, tuple, tuple]] = []
        # Keys a pre-hook filled with the model's own tensor (the method
        # state a dense checkpoint lacks): neither found nor missing.
        self.kept_own: set = set()

    def checked_part(self, module) -> str:
        """Key prefix the architecture rule checks: ``'backbone.'`` or ''."""
        return 'backbone.' if hasattr(module, 'backbone') else ''

    def violations(self, prefix: str) -> Tuple[int, int]:
        """(found with the model's shape, total) tensors of the model under
        ``prefix``."""
        keys = [
            k for k in self.model_keys
            if k.startswith(prefix) and k not in self.kept_own
        ]
        lost = set(self.missing) | {k for k, _, _ in self.mismatched}
        found = sum(k not in lost for k in keys)
        return found, len(keys)

    def summary(self, owner: str, prefix: str = '') -> str:
        part = f'{owner} ({prefix.rstrip(".")})' if prefix else owner
        found, total = self.violations(prefix)
        lines = [
            f'checkpoint {_last_read["path"] or "(state dict)"} does not fit '
            f'{part}: {found} of its {total} tensors found with the right '
            f'shape; {len(self.mismatched)} with another shape, '
            f'{len(self.missing)} missing, {len(self.unexpected)} '
            'unexpected in the checkpoint.'
        ]
        if self.mismatched:
            lines.append('shapes (checkpoint vs model):')
            lines += [
                f'  {key}: {_shape(ckpt)} vs {_shape(model)}'
                for key, ckpt, model in self.mismatched[:SHOWN]
            ]
            if len(self.mismatched) > SHOWN:
                lines.append(f'  ... ({len(self.mismatched) - SHOWN} more)')
        if self.missing:
            lines.append(f'missing: {_first(self.missing)}')
        if self.unexpected:
            lines.append(f'unexpected: {_first(self.unexpected)}')
        lines += [f'  {e.strip()}' for e in self.errors[:SHOWN]]
        return '\n'.join(lines)


def _unwrap(module):
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(module) or isinstance(module, BaseTTAModel):
        module = module.module
    return module


def load_and_report(module, state_dict) -> LoadReport:
    """Load ``state_dict`` into ``module`` as ``nn.Module.load_state_dict``
    with ``strict=False`` does (load pre- and post-hooks, version metadata,
    model wrappers unwrapped as mmengine does), and report every key that
    did not load and why."""
    module = _unwrap(module)
    report = LoadReport([
        k for k in module.state_dict() if 'num_batches_tracked' not in k
    ])
    metadata = getattr(state_dict, '_metadata', None)
    state_dict = OrderedDict(state_dict)
    if metadata is not None:
        state_dict._metadata = metadata

    def load(module, local_state, prefix=''):
        module = _unwrap(module)
        local_metadata = {} if metadata is None else metadata.get(
            prefix[:-1], {})
        # strict=True only makes torch list unexpected keys; nothing raises.
        module._load_from_state_dict(local_state, prefix, local_metadata,
                                     True, report.missing, report.unexpected,
                                     report.errors)
        # The pre-hooks have run (renamed keys, resized placeholders): what
        # is still of another shape was not copied.
        own = list(module._parameters.items()) + [
            (name, buffer) for name, buffer in module._buffers.items()
            if name not in module._non_persistent_buffers_set
        ]
        for name, tensor in own:
            value = local_state.get(prefix + name)
            if tensor is None or not hasattr(value, 'shape'):
                continue
            if value.shape != tensor.shape:
                report.mismatched.append(
                    (prefix + name, tuple(value.shape), tuple(tensor.shape)))
            elif tensor.numel() and value.data_ptr() == tensor.data_ptr():
                report.kept_own.add(prefix + name)
        for name, child in module._modules.items():
            if child is not None:
                child_prefix = f'{prefix}{name}.'
                load(child, {
                    k: v
                    for k, v in local_state.items()
                    if k.startswith(child_prefix)
                }, child_prefix)
        for hook in module._load_state_dict_post_hooks.values():
            hook(module, _IncompatibleKeys(report.missing, report.unexpected))

    load(module, state_dict)
    report.missing = [
        k for k in report.missing if 'num_batches_tracked' not in k
    ]
    # torch words each shape mismatch as an error too: listed once, above.
    report.errors = [e for e in report.errors if 'size mismatch' not in e]
    return report


def checked_load_state_dict(module, state_dict, strict=False, logger=None):
    """mmengine's ``load_state_dict`` that raises
    :class:`CheckpointMismatchError` by the module docstring's rule (any
    difference when ``strict``), and otherwise logs the differences as
    mmengine does."""
    from mmengine.dist import get_dist_info
    report = load_and_report(module, state_dict)
    model = _unwrap(module)
    owner = type(model).__name__
    if strict:
        if report.missing or report.unexpected or report.mismatched or \
                report.errors:
            raise CheckpointMismatchError(
                report.summary(owner) +
                '\n(strict load: the checkpoint must hold exactly this '
                'model)')
        return
    prefix = report.checked_part(model)
    found, total = report.violations(prefix)
    reshaped = [k for k, _, _ in report.mismatched if k.startswith(prefix)]
    if total and (reshaped or found < MIN_FOUND * total):
        raise CheckpointMismatchError(
            report.summary(owner, prefix) + '\nIs it a checkpoint of another '
            'architecture or depth? (mmlgc refuses one whose '
            f'{prefix.rstrip(".") or "weights"} have another shape or lack '
            f'more than {1 - MIN_FOUND:.0%} of the tensors; see '
            'mmlgc/utils/checkpoint_checks.py)')
    if (report.missing or report.unexpected or report.mismatched
            or report.errors) and get_dist_info()[0] == 0:
        print_log(
            'The model and loaded state dict do not match exactly\n' +
            report.summary(owner) + (
                f'\nmissing keys in source state_dict: '
                f'{", ".join(report.missing)}' if report.missing else '') +
            (f'\nunexpected key in source state_dict: '
             f'{", ".join(report.unexpected)}' if report.unexpected else ''),
            logger=logger,
            level=logging.WARNING)


def checkpoint_checks_enabled() -> bool:
    """Whether :func:`enable_checkpoint_checks` ran in this process."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    return getattr(mmengine_checkpoint.CheckpointLoader.load_checkpoint,
                   '_mmlgc_checked', False)


#: mmengine's own loaders, kept by :func:`enable_checkpoint_checks` for
#: :func:`disable_checkpoint_checks`.
_mmengine_loaders: dict = {}


def enable_checkpoint_checks(log: bool = True) -> None:
    """Install the checks into ``mmengine.runner.checkpoint``, for the rest
    of the process (idempotent, logged once).

    mmengine's loaders are module-level functions that every path calls by
    name (``load_from``, ``--resume``, ``Pretrained``, ``load_checkpoint``),
    so the checks can only be installed there; what asks for them does so
    explicitly: :class:`mmlgc.engine.CheckpointChecksHook` (in a config's
    ``default_hooks``, before the run loads anything) and mmlgc's tools.
    Importing mmlgc does not. ``log=False``: the caller logs it."""
    if checkpoint_checks_enabled():
        return
    from mmengine.runner import checkpoint as mmengine_checkpoint
    loader = mmengine_checkpoint.CheckpointLoader
    original = loader.load_checkpoint.__func__
    _mmengine_loaders.update(
        load_checkpoint=loader.__dict__['load_checkpoint'],
        load_state_dict=mmengine_checkpoint.load_state_dict,
        _load_checkpoint_with_prefix=(
            mmengine_checkpoint._load_checkpoint_with_prefix))

    def load_checkpoint(cls, filename, map_location=None, logger='current'):
        return checked_load_checkpoint(cls, original, filename, map_location,
                                       logger)

    load_checkpoint._mmlgc_checked = True
    loader.load_checkpoint = classmethod(load_checkpoint)
    mmengine_checkpoint.load_state_dict = checked_load_state_dict
    mmengine_checkpoint._load_checkpoint_with_prefix = \
        checked_load_with_prefix
    if log:
        print_log(
            'mmlgc checkpoint checks enabled: unreadable checkpoints and '
            'checkpoints of another architecture are errors '
            '(mmlgc.utils.checkpoint_checks)', logger='current')


def disable_checkpoint_checks() -> None:
    """Put mmengine's own loaders back (undoes
    :func:`enable_checkpoint_checks`; for tests that need the process as
    mmengine leaves it, whatever ran before them)."""
    if not checkpoint_checks_enabled() or not _mmengine_loaders:
        return
    from mmengine.runner import checkpoint as mmengine_checkpoint
    mmengine_checkpoint.CheckpointLoader.load_checkpoint = \
        _mmengine_loaders['load_checkpoint']
    mmengine_checkpoint.load_state_dict = _mmengine_loaders['load_state_dict']
    mmengine_checkpoint._load_checkpoint_with_prefix = _mmengine_loaders[
        '_load_checkpoint_with_prefix']
    _mmengine_loaders.clear()


def local_checkpoints_in_config(cfg,
                                init_cfgs: bool = True
                                ) -> List[Tuple[str, str]]:
    """``(where, path)`` of every local checkpoint a config loads:
    ``load_from`` and (``init_cfgs``) each
    ``init_cfg=dict(type='Pretrained', ...)``."""
    found = []

    def visit(node, where):
        if isinstance(node, dict):
            if node.get('type') == 'Pretrained' and isinstance(
                    node.get('checkpoint'), str):
                found.append((where, node['checkpoint']))
            for key, value in node.items():
                visit(value, f'{where}.{key}')
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                visit(value, f'{where}[{index}]')

    if init_cfgs:
        visit(cfg.get('model'), 'model')
    if cfg.get('load_from'):
        found.append(('load_from', cfg.load_from))
    return [(where, path) for where, path in found if _is_local(path)]


def check_config_checkpoints(cfg, init_cfgs: bool = True) -> None:
    """Fail before a run starts (no work dir, no logs) if a checkpoint the
    config loads is missing, empty or truncated; the error names the config
    entry. (The CRCs are checked when the file is read.) ``init_cfgs=False``
    checks ``load_from`` only: testing never initialises weights, so the
    ``Pretrained`` checkpoints of training need not exist."""
    for where, path in local_checkpoints_in_config(cfg, init_cfgs):
        try:
            check_checkpoint_file(path, verify_crc=False)
        except (OSError, CheckpointError) as error:
            raise type(error)(f'{where}: {error}') from None
