"""Training-time machinery as mmengine components that configs select:
progress-driven schedules (hooks), exact resume (a train loop and a hook),
atomic checkpoints, checkpoint checks, discrete-state-aware model averaging,
the CPU distributed wrapper."""
from .averaged_models import (DiscreteStateAveraging,  # noqa: F401
                              ExponentialMovingAverage, MomentumAnnealingEMA,
                              StochasticWeightAverage)
from .distributed import (CPUDistributedDataParallel,  # noqa: F401
                          setup_cpu_distributed)
from .hooks import *  # noqa: F401,F403
from .loops import ExactResumeEpochBasedTrainLoop  # noqa: F401
