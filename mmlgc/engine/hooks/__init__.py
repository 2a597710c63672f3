from .budget_hook import MACBudgetHook
from .dgc_hook import DGCScheduleHook
from .flgc_hook import FLGCAssignmentHook
from .self_grouping_hook import SelfGroupingHook

__all__ = [
    'DGCScheduleHook', 'FLGCAssignmentHook', 'MACBudgetHook',
    'SelfGroupingHook'
]
