"""bittile: a compiler for low-precision tile kernels.

This module only re-exports the public API. Heavy toolchains (triton, llvmlite, torch) are
imported by the backends that need them, never here.
"""

from bittile.dsl import decorators as _decorators
from bittile.dsl.decorators import BUILTIN_NAMES as _BUILTIN_NAMES
from bittile.dsl.decorators import func, kernel
from bittile.dsl.kernel import TileFunction, TileKernel
from bittile.dsl.module import TileModule, load_module, load_source
from bittile.errors import (
    BittileError,
    DTypeError,
    InternalError,
    IRError,
    LaunchError,
    LayoutError,
    PackingError,
    TileSyntaxError,
    TileTypeError,
)
from bittile.ir.dtypes import (
    ALL_DTYPES,
    DType,
    bf16,
    boolean,
    dtype_from_name,
    f4e2m1,
    f6e2m3,
    f6e3m2,
    f8e4m3,
    f8e5m2,
    f16,
    f32,
    float_type,
    i1,
    i2,
    i3,
    i4,
    i5,
    i6,
    i7,
    i8,
    i16,
    i32,
    int_type,
    u1,
    u2,
    u3,
    u4,
    u5,
    u6,
    u7,
    u8,
    u16,
    u32,
)
from bittile.ir.layout import (
    RegisterLayout,
    column_local,
    column_spatial,
    concat,
    local,
    parse_layout,
    replicated,
    spatial,
)
from bittile.runtime.autotune import autotune
from bittile.runtime.config import override as options
from bittile.runtime.packed import PackedTensor, pack, unpack

# The tile language's builtins (bittile.load, bittile.grid, ...), for Python kernels.
globals().update({_name: getattr(_decorators, _name) for _name in _BUILTIN_NAMES})

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``bittile.torch``: the torch.library ops, loaded (with torch) on first use
    if name == "torch":
        import importlib

        module = importlib.import_module("bittile.torch_library")
        globals()["torch"] = module
        return module
    raise AttributeError(f"module 'bittile' has no attribute {name!r}")

__all__ = [
    "BittileError", "DTypeError", "InternalError", "IRError", "LaunchError", "LayoutError",
    "PackingError", "TileSyntaxError", "TileTypeError",
    "ALL_DTYPES", "DType", "dtype_from_name", "float_type", "int_type", "boolean",
    "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u16", "u32",
    "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i16", "i32",
    "f16", "bf16", "f32", "f8e4m3", "f8e5m2", "f6e3m2", "f6e2m3", "f4e2m1",
    "RegisterLayout", "spatial", "local", "column_spatial", "column_local", "replicated",
    "concat", "parse_layout",
    "PackedTensor", "pack", "unpack", "options", "autotune",
    "kernel", "func", "TileKernel", "TileFunction", "TileModule", "load_module", "load_source",
    *_BUILTIN_NAMES,
]
