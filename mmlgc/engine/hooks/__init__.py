from .budget_hook import MACBudgetHook
from .checkpoint_checks_hook import CheckpointChecksHook
from .checkpoint_hook import AtomicCheckpointHook
from .dgc_hook import DGCScheduleHook
from .flgc_hook import FLGCAssignmentHook
from .random_state_hook import RandomStateHook
from .self_grouping_hook import SelfGroupingHook

__all__ = [
    'AtomicCheckpointHook', 'CheckpointChecksHook', 'DGCScheduleHook',
    'FLGCAssignmentHook', 'MACBudgetHook', 'RandomStateHook',
    'SelfGroupingHook'
]
