"""Price catalog, credits ledger, holds, budgets and usage (built with the billing issue)."""
