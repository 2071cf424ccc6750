"""Placeholder package; see issues for the work that fills it."""
