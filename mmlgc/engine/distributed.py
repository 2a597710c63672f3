"""Multi-process training and testing on machines without a GPU: the
model wrapper. The config adaptation that selects it is
:func:`mmlgc.utils.distributed.setup_cpu_distributed`."""
from mmengine.model import MMDistributedDataParallel

from ..registry import MODEL_WRAPPERS
from ..utils.distributed import setup_cpu_distributed  # noqa: F401


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's ``MMDistributedDataParallel`` for CPU modules: the Runner
    always passes ``device_ids=[LOCAL_RANK]``, which torch's DDP accepts for
    GPU modules only; for a module on the CPU they are dropped. Everything
    else (``train_step``, gradient averaging) is mmengine's."""

    def __init__(self, module, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        super().__init__(
            module=module, device_ids=None if on_cpu else device_ids, **kwargs)
