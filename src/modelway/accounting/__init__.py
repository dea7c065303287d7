"""Accounting: prompt token counting, prices and cost, and the request ledger."""
