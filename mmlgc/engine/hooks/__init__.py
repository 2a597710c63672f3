from .budget_hook import MACBudgetHook

__all__ = ['MACBudgetHook']
