"""The NumPy interpreter backend: the executable specification of the tile IR."""

from bittile.backends.interp.interpreter import EVALUATORS, run, run_bound

__all__ = ["run", "run_bound", "EVALUATORS"]
from bittile.backends.interp import fused as _fused  # registers the fused ops' evaluators
from bittile.backends.interp import packed as _packed  # registers the word ops' evaluators
