"""May this action run, at which level, and why: the guard, levels, risk, scope, policy engines, and the budgets
actions are held to."""
