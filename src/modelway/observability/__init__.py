"""Logs (structlog); metrics and traces join here."""
