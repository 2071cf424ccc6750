"""KIVI: 2- and 4-bit KV-cache quantization with a full-precision window of recent tokens
(Liu et al., *KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache*, 2024).

:func:`kivi_quantize` is the quantizer: asymmetric min-max per group of ``group_size``
consecutive elements along one axis. :class:`KIVICache` keeps a decoder layer's keys per
channel (groups along the tokens) and values per token (groups along the channels), the most
recent tokens in full precision, and computes decode attention directly on the packed codes
with the kernels of ``stdlib/kvcache.tile``. docs/stdlib-kvcache.md describes both.

This module also holds what every quantized cache shares: the full-precision window
(:class:`ResidualWindow`) and the launch of the window's and the merge kernels
(:class:`DecodeStep`), which ``stdlib/pq.py`` uses as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bittile.errors import LaunchError
from bittile.runtime import config
from bittile.runtime.packed import PackedTensor

__all__ = ["KIVIQuantized", "kivi_quantize", "KIVICache", "default_backend"]

LOG2E = math.log2(math.e)


def default_backend() -> str:
    """``BITTILE_BACKEND`` if set, else ``"llvm"`` when llvmlite imports, else ``"interp"``."""
    name = config.get("BITTILE_BACKEND")
    if name:
        return name
    try:
        import llvmlite  # noqa: F401
    except ImportError:
        return "interp"
    return "llvm"


# ---- the quantizer ---------------------------------------------------------------------------
@dataclass(frozen=True)
class KIVIQuantized:
    """``x`` quantized by :func:`kivi_quantize`: ``x ~ codes * scales + mins`` per group.

    ``codes`` is a PackedTensor of ``u2`` or ``u4`` with x's shape; ``scales`` and ``mins`` are
    f32 numpy arrays of x's shape with ``axis`` shortened to ``ceil(n / group_size)`` groups.
    """

    codes: PackedTensor
    scales: np.ndarray
    mins: np.ndarray
    bits: int
    group_size: int
    axis: int

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    def dequantize(self) -> np.ndarray:
        """``codes * scale + min`` in f32, x's shape."""
        codes = self.codes.codes().astype(np.float32)
        return codes * self._per_element(self.scales) + self._per_element(self.mins)

    def _per_element(self, groups: np.ndarray) -> np.ndarray:
        n = self.shape[self.axis]
        return np.repeat(groups, self.group_size, axis=self.axis).take(
            np.arange(n), axis=self.axis)


def kivi_quantize(x, bits: int, group_size: int, axis: int) -> KIVIQuantized:
    """Quantize ``x`` to ``bits`` (2 or 4) bits per element, asymmetrically, with one scale and
    one minimum per group of ``group_size`` consecutive elements along ``axis``:

        scale = (max - min) / (2^bits - 1),  code = round(clamp((x - min) / scale, 0, 2^bits - 1))

    in f32, rounding half to even. The last group along ``axis`` may be shorter. A group whose
    elements are all equal (max == min) gets scale 0 and codes 0, so it dequantizes exactly to
    its value, with no division by zero. KIVI quantizes keys with ``axis`` the token axis
    (per channel) and values with ``axis`` the channel axis (per token). ``x`` is a torch
    tensor or numpy array of any float dtype, with finite values.
    """
    if bits not in (2, 4):
        raise LaunchError(f"kivi_quantize: bits must be 2 or 4, got {bits}")
    values = as_f32_numpy(x, "x")
    if values.ndim == 0:
        raise LaunchError("kivi_quantize: x must have at least one dimension")
    axis = _axis(axis, values.ndim)
    if not isinstance(group_size, int) or group_size < 1 or values.shape[axis] == 0:
        raise LaunchError(f"kivi_quantize: group_size must be a positive int and axis {axis} "
                          f"non-empty, got group_size={group_size!r}, shape {list(values.shape)}")
    if not np.isfinite(values).all():
        raise LaunchError("kivi_quantize: x holds NaN or infinite values")
    codes, scales, mins = quantize_groups(values, bits, group_size, axis)
    return KIVIQuantized(pack_low_bits(codes, bits), scales, mins, bits, group_size, axis)


def quantize_groups(x: np.ndarray, bits: int, group: int, axis: int):
    """KIVI's formulas on a finite f32 array: (uint8 codes of x's shape, f32 scales, f32 mins
    of x's shape with ``axis`` cut into groups)."""
    n = x.shape[axis]
    outer, inner = math.prod(x.shape[:axis]), math.prod(x.shape[axis + 1:])
    groups = -(-n // group)
    rows = x.reshape(outer, n, inner)
    if n % group:  # repeating the last element fills the last group, min and max unchanged
        rows = np.concatenate([rows, np.repeat(rows[:, -1:], groups * group - n, 1)], 1)
    grouped = rows.reshape(outer, groups, group, inner)
    lo = grouped.min(2)
    qmax = np.float32((1 << bits) - 1)
    scale = (grouped.max(2) - lo) / qmax
    step = np.where(scale == 0, np.float32(1), scale)
    codes = np.rint(np.clip((grouped - lo[:, :, None]) / step[:, :, None], 0, qmax))
    codes = codes.astype(np.uint8).reshape(outer, groups * group, inner)[:, :n]
    grouped_shape = (*x.shape[:axis], groups, *x.shape[axis + 1:])
    return (codes.reshape(x.shape), scale.reshape(grouped_shape).astype(np.float32, copy=False),
            lo.reshape(grouped_shape))


def pack_low_bits(codes: np.ndarray, bits: int) -> PackedTensor:
    """``codes`` (uint8, each below 2^bits, bits dividing 8) as a PackedTensor of ``u<bits>``:
    element i in bits [i * bits, (i + 1) * bits) of the stream, LSB first (what
    ``PackedTensor.from_codes`` does, specialized to whole codes per byte, for speed)."""
    per = 8 // bits
    flat = np.ascontiguousarray(codes, np.uint8).reshape(-1)
    if flat.size % per:
        flat = np.concatenate([flat, np.zeros(per - flat.size % per, np.uint8)])
    fields = flat.reshape(-1, per)
    packed = fields[:, 0].copy()
    for c in range(1, per):
        packed |= fields[:, c] << np.uint8(c * bits)
    return PackedTensor(packed, codes.shape, f"u{bits}")


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise LaunchError(f"axis {axis} is out of range for {ndim} dimensions")
    return axis % ndim


def as_f32_numpy(x, name: str) -> np.ndarray:
    """``x`` (torch tensor or numpy array of floats) as a C-contiguous f32 numpy array."""
    if type(x).__module__.startswith("torch"):
        x = x.detach().to("cpu").float().numpy()
    elif not isinstance(x, np.ndarray):
        raise LaunchError(f"{name} must be a torch tensor or a numpy array, "
                          f"got {type(x).__name__}")
    if x.dtype.kind != "f" and str(x.dtype) != "bfloat16":
        raise LaunchError(f"{name} must hold floats, got {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


# ---- what every quantized cache shares ----------------------------------------------------
def _kernels():
    from bittile.stdlib import kernels

    return kernels("kvcache")


def checked_kv(k, v, dims: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    """``k`` and ``v`` for ``append``: f32 numpy ``[B, Hkv, T, D]`` of one shape, with the
    cache's ``(B, Hkv, D)`` (``dims``; None before the first append), finite."""
    k, v = as_f32_numpy(k, "k"), as_f32_numpy(v, "v")
    if k.ndim != 4 or k.shape != v.shape:
        raise LaunchError(f"k and v must be [B, Hkv, T, D] of one shape, got "
                          f"{list(k.shape)} and {list(v.shape)}")
    if dims is not None and (k.shape[0], k.shape[1], k.shape[3]) != dims:
        raise LaunchError(f"k and v must be [B, Hkv, T, D] = [{dims[0]}, {dims[1]}, T, "
                          f"{dims[2]}] like the cache, got {list(k.shape)}")
    if not (np.isfinite(k).all() and np.isfinite(v).all()):
        raise LaunchError("k and v must hold finite values")
    return k, v


def carried_over(arrays: dict, old: dict | None) -> dict:
    """``arrays`` (a cache's grown block arrays, blocks along axis 2) with the blocks of
    ``old`` copied to their start."""
    for name, a in (old or {}).items():
        arrays[name][:, :, :a.shape[2]] = a
    return arrays


class ResidualWindow:
    """The most recent tokens of a cache in f32, ``k`` and ``v`` ``[B, Hkv, capacity, D]``;
    ``push`` with ``keep + group - 1 <= capacity`` never holds more."""

    def __init__(self, b: int, hkv: int, d: int, capacity: int):
        self.k = np.zeros((b, hkv, capacity, d), np.float32)
        self.v = np.zeros((b, hkv, capacity, d), np.float32)
        self.length = 0

    def push(self, k: np.ndarray, v: np.ndarray, keep: int, group: int):
        """Append ``k``, ``v`` ``[B, Hkv, T, D]``, then take whole groups of ``group`` tokens
        from the front while more than ``keep + group - 1`` tokens are held; returns those
        tokens (``[B, Hkv, n * group, D]`` each; n may be 0)."""
        keys, values = k, v
        if self.length:
            keys = np.concatenate([self.k[:, :, :self.length], k], 2)
            values = np.concatenate([self.v[:, :, :self.length], v], 2)
        moved = max(0, (keys.shape[2] - keep) // group) * group
        rest = keys.shape[2] - moved
        self.k[:, :, :rest] = keys[:, :, moved:]
        self.v[:, :, :rest] = values[:, :, moved:]
        self.length = rest
        return keys[:, :, :moved], values[:, :, :moved]


@dataclass
class DecodeStep:
    """One attention call over a cache: the query rows, the partial results of each kernel
    (``slots`` of them) and the merge. Query row r of kv head h is query head
    ``h * (H // Hkv) + r // Lq``, query token ``r % Lq`` at sequence position ``first + r % Lq``.
    """

    q: np.ndarray  # [B, Hkv, R, D] f32
    shape: tuple  # q's [B, H, Lq, D]
    lq: int
    first: int
    qk_scale: float
    backend: str
    slots: int = 0

    @classmethod
    def start(cls, q, hkv: int, d: int, length: int, scale, backend) -> DecodeStep:
        qf = as_f32_numpy(q, "q")
        if qf.ndim != 4 or qf.shape[3] != d:
            raise LaunchError(f"q must be [B, H, Lq, D] with D = {d}, got {list(qf.shape)}")
        b, h, lq, _ = qf.shape
        if h % hkv:
            raise LaunchError(f"q has {h} heads, not a multiple of the cache's {hkv} kv heads")
        if not 1 <= lq <= length:
            raise LaunchError(f"q has {lq} query tokens; the cache holds {length} tokens and "
                              "the query tokens are its last ones")
        scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
        step = cls(qf.reshape(b, hkv, (h // hkv) * lq, d), tuple(qf.shape), lq, length - lq,
                   scale * LOG2E, backend or default_backend())
        return step

    @property
    def rows(self) -> int:
        return self.q.shape[2]

    def allocate(self, slots: int) -> None:
        b, hkv, r, d = self.q.shape
        self.slots = slots
        self.pm = np.full((b, hkv, r, slots), -np.inf, np.float32)
        self.pl = np.zeros((b, hkv, r, slots), np.float32)
        self.po = np.zeros((b, hkv, r, slots, d), np.float32)

    def partials(self) -> tuple:
        return self.pm, self.pl, self.po

    def residual(self, window: ResidualWindow, pos0: int, slot: int) -> None:
        """The window's partial result into ``slot`` (its tokens start at position pos0)."""
        if window.length == 0:
            return
        _kernels().residual_attend(self.q, window.k, window.v, *self.partials(), self.qk_scale,
                                   window.length, pos0, self.first, slot, backend=self.backend,
                                   R=self.rows, LQ=self.lq, D=self.q.shape[3], BN=32)

    def finish(self, like):
        """Merge the partial results; the output [B, H, Lq, D] as the type and dtype of
        ``like`` (torch tensors keep their device)."""
        b, hkv, r, d = self.q.shape
        n = b * hkv * r
        out = np.zeros((n, d), np.float32)
        sp = 1 << max(0, self.slots - 1).bit_length()
        _kernels().attend_merge(self.pm.reshape(n, self.slots), self.pl.reshape(n, self.slots),
                                self.po.reshape(n, self.slots, d), out, backend=self.backend,
                                SP=sp, D=d)
        out = out.reshape(self.shape)
        if type(like).__module__.startswith("torch"):
            import torch

            return torch.from_numpy(out).to(device=like.device, dtype=like.dtype)
        floats = like.dtype.kind == "f" or str(like.dtype) == "bfloat16"
        return out.astype(like.dtype if floats else np.float32, copy=False)


def quantized_splits(programs: int, blocks: int) -> int:
    """Chunks the quantized blocks are split into, for ``programs`` (sequence, kv head) pairs:
    about 64 programs in all (the llvm backend gives each thread a contiguous range of them),
    each with at least two blocks."""
    want = max(1, -(-64 // max(programs, 1)))
    return max(1, min(want, blocks // 2 or 1))


# ---- the KIVI cache ------------------------------------------------------------------------
def kivi_groups_per_block(group: int) -> int:
    """Key groups per block of ``kivi_attend`` (``stdlib/kvcache.tile``): blocks of about 128
    tokens, so that the online softmax's bookkeeping (a running max, rescaling the
    accumulator) is spread over enough tokens while a block's codes stay in the first-level
    cache."""
    return max(1, 128 // group)


def plane_major(codes: np.ndarray, bits: int) -> np.ndarray:
    """Bytes of ``codes`` (uint8, last axis a multiple of ``per = 8 // bits`` long) with the
    last axis split into ``per`` planes: field c of byte j holds code ``c * (n / per) + j``
    (``stdlib/kvcache.tile`` reads a field of a row of bytes as a run of consecutive codes)."""
    per = 8 // bits
    planes = codes.reshape(*codes.shape[:-1], per, codes.shape[-1] // per)
    out = planes[..., 0, :].copy()
    for c in range(1, per):
        out |= planes[..., c, :] << np.uint8(c * bits)
    return out


def from_plane_major(packed: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of :func:`plane_major`."""
    per, mask = 8 // bits, (1 << bits) - 1
    planes = [(packed >> np.uint8(c * bits)) & np.uint8(mask) for c in range(per)]
    return np.stack(planes, -2).reshape(*packed.shape[:-1], per * packed.shape[-1])


class KIVICache:
    """A decoder layer's KV cache in KIVI's format.

    ``append(k, v)`` takes ``[B, Hkv, T, D]`` keys and values (any T, torch or numpy). Tokens
    enter a full-precision window; whenever it holds ``residual_length + group_size`` tokens,
    its oldest ``group_size`` move to the quantized part, keys quantized per channel (one scale
    and minimum per channel and group of ``group_size`` tokens), values per token (per token
    and group of ``group_size`` channels). So the last ``residual_length`` tokens (at least)
    are always exact. ``attention(q)`` computes softmax attention of q ``[B, H, Lq, D]`` (H a
    multiple of Hkv; the Lq query tokens are the cache's last tokens, each seeing itself and
    the tokens before it) over the whole cache, on the packed codes.
    """

    def __init__(self, bits: int = 4, group_size: int = 32, residual_length: int = 128, *,
                 backend: str | None = None):
        if bits not in (2, 4):
            raise LaunchError(f"KIVICache: bits must be 2 or 4, got {bits}")
        per = 8 // bits
        if not isinstance(group_size, int) or group_size < 1 or group_size % per:
            raise LaunchError(f"KIVICache: group_size must be a positive multiple of {per} for "
                              f"{bits}-bit codes (whole bytes per group), got {group_size!r}")
        if not isinstance(residual_length, int) or residual_length < 0:
            raise LaunchError(f"KIVICache: residual_length must be an int >= 0, got "
                              f"{residual_length!r}")
        self.bits, self.group_size, self.residual_length = bits, group_size, residual_length
        self.backend = backend
        self.quantized_length = 0
        self._window: ResidualWindow | None = None
        self._blocks = 0

    # ---- shape ---------------------------------------------------------------------------
    @property
    def residual(self) -> int:
        """Tokens in the full-precision window."""
        return 0 if self._window is None else self._window.length

    def __len__(self) -> int:
        return self.quantized_length + self.residual

    def _start(self, b: int, hkv: int, d: int) -> None:
        per = 8 // self.bits
        if d % per:
            raise LaunchError(f"KIVICache: the head dimension {d} must be a multiple of {per} "
                              f"for {self.bits}-bit codes")
        self.dims = (b, hkv, d)
        self.value_group = min(self.group_size, d)
        self.nv = -(-d // self.value_group)
        self.ng = kivi_groups_per_block(self.group_size)
        self.block = self.ng * self.group_size
        self._window = ResidualWindow(b, hkv, d, self.residual_length + self.group_size)
        self._grow(1)

    def _grow(self, need: int) -> None:
        """Make room for ``need`` quantized tokens (doubling the blocks)."""
        blocks = -(-need // self.block)
        if blocks <= self._blocks:
            return
        blocks = max(blocks, 2 * self._blocks)
        b, hkv, d = self.dims
        per, bn, nv, ng = 8 // self.bits, self.block, self.nv, self.ng
        arrays = {  # the layouts kivi_attend reads (stdlib/kvcache.tile)
            "kc": np.zeros((b, hkv, blocks * ng, d * self.group_size // per), np.uint8),
            "ks": np.zeros((b, hkv, blocks * ng, d), np.float32),
            "km": np.zeros((b, hkv, blocks * ng, d), np.float32),
            "vc": np.zeros((b, hkv, blocks * nv, bn * self.value_group // per), np.uint8),
            "vs": np.zeros((b, hkv, blocks * nv, bn), np.float32),
            "vm": np.zeros((b, hkv, blocks * nv, bn), np.float32),
        }
        self._arrays = carried_over(arrays, self._arrays if self._blocks else None)
        self._blocks = blocks

    # ---- appending -----------------------------------------------------------------------
    def append(self, k, v) -> None:
        """Add ``T`` tokens: ``k`` and ``v`` are ``[B, Hkv, T, D]``."""
        k, v = checked_kv(k, v, None if self._window is None else self.dims)
        if self._window is None:
            self._start(k.shape[0], k.shape[1], k.shape[3])
        moved_k, moved_v = self._window.push(k, v, self.residual_length, self.group_size)
        if moved_k.shape[2]:
            self._quantize(moved_k, moved_v)

    def _quantize(self, k: np.ndarray, v: np.ndarray) -> None:
        """Quantize ``t`` tokens (a multiple of the group size) after the ``n`` held."""
        n, t = self.quantized_length, k.shape[2]
        g, vg, nv, bn = self.group_size, self.value_group, self.nv, self.block
        self._grow(n + t)
        a, (b, hkv, d) = self._arrays, self.dims
        # keys: a row of D * G / per bytes per group of tokens
        codes, kscale, kmin = quantize_groups(k, self.bits, g, axis=2)
        groups = codes.reshape(b, hkv, t // g, g, d).transpose(0, 1, 2, 4, 3)
        a["kc"][:, :, n // g:(n + t) // g] = plane_major(groups, self.bits).reshape(
            b, hkv, t // g, -1)
        a["ks"][:, :, n // g:(n + t) // g] = kscale
        a["km"][:, :, n // g:(n + t) // g] = kmin
        # values: per block, a row of BN * VG / per bytes per channel group
        codes, vscale, vmin = quantize_groups(v, self.bits, vg, axis=3)
        codes = np.concatenate([codes, np.zeros((b, hkv, t, nv * vg - d), np.uint8)], 3)
        packed = plane_major(codes.reshape(b, hkv, t, nv, vg), self.bits)
        vc = a["vc"].reshape(b, hkv, -1, nv, bn, packed.shape[-1])
        vs = a["vs"].reshape(b, hkv, -1, nv, bn)
        vm = a["vm"].reshape(b, hkv, -1, nv, bn)
        for blk in range(n // bn, -(-(n + t) // bn)):  # the blocks the new tokens fall in
            lo, hi = max(n, blk * bn), min(n + t, (blk + 1) * bn)
            rows = slice(lo - blk * bn, hi - blk * bn)
            vc[:, :, blk, :, rows] = packed[:, :, lo - n:hi - n].transpose(0, 1, 3, 2, 4)
            vs[:, :, blk, :, rows] = vscale[:, :, lo - n:hi - n].transpose(0, 1, 3, 2)
            vm[:, :, blk, :, rows] = vmin[:, :, lo - n:hi - n].transpose(0, 1, 3, 2)
        self.quantized_length = n + t

    # ---- reading -------------------------------------------------------------------------
    def dequantize(self) -> tuple[np.ndarray, np.ndarray]:
        """The keys and values the attention sees, f32 ``[B, Hkv, len(self), D]`` each."""
        if self._window is None:
            raise LaunchError("the cache is empty")
        b, hkv, d = self.dims
        n, g, vg, nv, a = self.quantized_length, self.group_size, self.value_group, self.nv, \
            self._arrays
        groups = n // g
        kc = from_plane_major(a["kc"][:, :, :groups].reshape(b, hkv, groups, d, g * self.bits // 8),
                              self.bits)
        kc = kc.transpose(0, 1, 2, 4, 3).reshape(b, hkv, n, d)
        k = kc * np.repeat(a["ks"][:, :, :groups], g, 2) + np.repeat(a["km"][:, :, :groups], g, 2)

        def per_token(name, *tail):  # [B, Hkv, blocks * NV, BN, ...] -> [B, Hkv, n, NV, ...]
            x = a[name].reshape(b, hkv, -1, nv, self.block, *tail)
            return np.moveaxis(x, 3, 4).reshape(b, hkv, -1, nv, *tail)[:, :, :n]

        vc = from_plane_major(per_token("vc", vg * self.bits // 8), self.bits)
        vc = vc.reshape(b, hkv, n, nv * vg)[..., :d]
        vs = np.repeat(per_token("vs"), vg, 3)[..., :d]
        vm = np.repeat(per_token("vm"), vg, 3)[..., :d]
        w = self._window
        keys = np.concatenate([k.astype(np.float32), w.k[:, :, :w.length]], 2)
        values = np.concatenate([(vc * vs + vm).astype(np.float32), w.v[:, :, :w.length]], 2)
        return keys, values

    @property
    def nbytes(self) -> int:
        """Bytes of the quantized tokens (codes, scales, minimums) and of the window."""
        if self._window is None:
            return 0
        b, hkv, d = self.dims
        n, per, g, nv = self.quantized_length, 8 // self.bits, self.group_size, self.nv
        codes = n * d // per + n * nv * self.value_group // per  # value groups padded
        quantized = b * hkv * (codes + 8 * (n // g) * d + 8 * n * nv)
        return quantized + 8 * b * hkv * self.residual * d

    def attention(self, q, *, scale: float | None = None, backend: str | None = None):
        """Attention of ``q [B, H, Lq, D]`` over the cache (see the class docstring);
        ``scale`` defaults to ``1 / sqrt(D)``. The result has q's shape, type and dtype."""
        if len(self) == 0:
            raise LaunchError("attention over an empty cache")
        b, hkv, d = self.dims
        step = DecodeStep.start(q, hkv, d, len(self), scale, backend or self.backend)
        blocks = -(-self.quantized_length // self.block)
        splits = quantized_splits(b * hkv, blocks) if blocks else 0
        step.allocate(splits + (self.residual > 0))
        if splits:
            a = self._arrays
            _kernels().kivi_attend(
                step.q, *(a[name] for name in KIVI_ARRAYS), *step.partials(), step.qk_scale,
                self.quantized_length, step.first, splits, backend=step.backend,
                BITS=self.bits, R=step.rows, LQ=step.lq, D=d, G=self.group_size,
                VG=self.value_group, NG=self.ng)
        step.residual(self._window, self.quantized_length, splits)
        return step.finish(q)


#: the cache's arrays in the order kivi_attend takes them
KIVI_ARRAYS = ("kc", "ks", "km", "vc", "vs", "vm")
