from .budget_hook import MACBudgetHook
from .dgc_hook import DGCScheduleHook

__all__ = ['DGCScheduleHook', 'MACBudgetHook']
