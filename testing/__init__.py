"""Test your kernels with bittile: hypothesis strategies (:mod:`bittile.testing.strategies`),
differential checkers (:mod:`bittile.testing.checkers`) and guarded memory
(:mod:`bittile.testing.guards`). See docs/testing.md. Importing this package needs hypothesis
(the ``test`` extra); ``import bittile`` does not load it."""

from bittile.testing.checkers import assert_backends_agree, assert_pipeline_preserves
from bittile.testing.strategies import (
    TileProgram,
    dtypes,
    kernels,
    layouts,
    packed_tensors,
    tensors,
)

__all__ = ["dtypes", "layouts", "tensors", "packed_tensors", "kernels", "TileProgram",
           "assert_backends_agree", "assert_pipeline_preserves"]
