"""Detectors and actions that guard what goes in and what comes out."""
