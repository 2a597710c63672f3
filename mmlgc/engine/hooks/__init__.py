from .budget_hook import MACBudgetHook
from .dgc_hook import DGCScheduleHook
from .flgc_hook import FLGCAssignmentHook
from .random_state_hook import RandomStateHook
from .self_grouping_hook import SelfGroupingHook

__all__ = [
    'DGCScheduleHook', 'FLGCAssignmentHook', 'MACBudgetHook',
    'RandomStateHook', 'SelfGroupingHook'
]
