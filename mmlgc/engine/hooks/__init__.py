from .budget_hook import MACBudgetHook
from .dgc_hook import DGCScheduleHook
from .self_grouping_hook import SelfGroupingHook

__all__ = ['DGCScheduleHook', 'MACBudgetHook', 'SelfGroupingHook']
