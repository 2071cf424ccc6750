"""Hypothesis strategies and differential checkers for bittile kernels."""
