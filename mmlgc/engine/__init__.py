"""Training-time machinery: progress-driven schedules as mmengine hooks."""
from .distributed import (CPUDistributedDataParallel,  # noqa: F401
                          setup_cpu_distributed)
from .hooks import *  # noqa: F401,F403
