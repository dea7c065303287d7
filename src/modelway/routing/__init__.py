"""Choosing a deployment for each request and calling it."""
