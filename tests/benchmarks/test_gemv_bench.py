"""The GEMV benchmark harness (benchmarks/gemv.py): data, baselines, checks, output, targets.

These run the harness's quick mode on tiny shapes only; they check correctness, never speed.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from bittile.benchmarks import common, gemv
from bittile.ir.bitstream import pack_codes as bittile_pack_codes

ALL_FORMATS = ["u1", "u2", "u3", "u4", "u8", "i2", "i3", "i4", "i8"]
BASELINES = [
    "numpy_fp32",
    "torch_fp32",
    "torch_bf16",
    "torch_int4",
    "torch_int4_f32",
    "numpy_dequant",
]
TINY = dataclasses.replace(  # quick mode's settings (no retries, no minimum time), smaller
    gemv.QUICK_CONFIG,
    shapes=((64, 256),),
    weights=("u1", "u3", "u4", "i4"),
    ms=(1, 3),
    repeats=2,
    warmup=0,
    max_seconds=0.05,
    bandwidth_bytes=1 << 20,
    idle_check_seconds=0.05,
)


@pytest.fixture
def registry():
    """Restore the contender registry after a test that registers contenders."""
    saved = dict(gemv._REGISTRY)
    yield gemv
    gemv._REGISTRY.clear()
    gemv._REGISTRY.update(saved)


@pytest.fixture(scope="module")
def quick_results():
    return gemv.run_benchmark(gemv.QUICK_CONFIG, log=None)


# ---------------------------------------------------------------------------------- data


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_pack_roundtrip_and_bittile_memory_form(name):
    fmt = gemv.WeightFormat.parse(name)
    rng = np.random.default_rng(1)
    weight = gemv.make_weight(16, 256, fmt, 128, rng)
    codes = weight.codes
    assert codes.min() >= fmt.qmin and codes.max() <= fmt.qmax
    assert weight.packed.shape == (16, 256 * fmt.bits // 8)
    assert weight.weight_bytes == 16 * 256 * fmt.bits // 8
    back = gemv.unpack_codes(weight.packed, fmt.bits, 256, fmt.signed)
    np.testing.assert_array_equal(back, codes)
    # The same bytes as bittile's own bitstream of the (two's complement) codes.
    unsigned = codes.astype(np.int64) & ((1 << fmt.bits) - 1)
    np.testing.assert_array_equal(weight.packed.reshape(-1), bittile_pack_codes(unsigned, fmt.bits))


def test_weight_values_are_bf16_exact():
    rng = np.random.default_rng(2)
    weight = gemv.make_weight(32, 256, gemv.WeightFormat.parse("u4"), 128, rng)
    x = gemv.make_activations(2, 256, rng)
    for arr in (x, weight.scales, (8 - weight.zeros) * weight.scales):
        bits = np.asarray(arr, np.float32).view(np.uint32)
        assert not (bits & 0xFFFF).any()
    w = weight.dequantize(np.float32)
    expected = (weight.codes.astype(np.float64) - np.repeat(weight.zeros, 128, axis=1)) * np.repeat(
        weight.scales, 128, axis=1
    )
    np.testing.assert_array_equal(w, expected)


@pytest.mark.parametrize("name", ["u4", "i4"])
def test_torch_int4_operands_match_our_dequantization(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    weight = gemv.make_weight(32, 256, gemv.WeightFormat.parse(name), 128, rng)
    x = gemv.make_activations(2, 256, rng)
    ref = x.astype(np.float64) @ weight.dequantize(np.float64).T
    packed, sz = gemv.torch_int4_operands(weight, torch.float32)
    assert packed.dtype == torch.uint8 and tuple(packed.shape) == (32, 128)
    assert tuple(sz.shape) == (2, 32, 2)
    y = torch._weight_int4pack_mm_for_cpu(torch.from_numpy(x), packed, 128, sz).numpy()
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


# ---------------------------------------------------------------------------- quick run


def test_quick_run_every_baseline_checked(quick_results):
    res = quick_results
    entries = res["results"]
    assert entries
    bad = [e for e in entries if e["status"] not in ("ok", "not_applicable")]
    assert not bad, bad
    ((n, k),) = res["config"]["shapes"]
    for m in res["config"]["m"]:
        for name in ("numpy_fp32", "torch_fp32", "torch_bf16"):
            found = [e for e in entries if e["contender"] == name and e["M"] == m]
            assert len(found) == 1 and found[0]["status"] == "ok"  # dense: once per (shape, M)
            assert found[0]["weights"] is None
        for w in res["config"]["weights"]:
            e = gemv._lookup(entries, "numpy_dequant", n, k, m, w)
            assert e is not None, (w, m)
            int4 = gemv._lookup(entries, "torch_int4", n, k, m, w)
            assert (int4 is not None) == (w in ("u4", "i4")), (w, m)
    for e in entries:
        if e["status"] == "ok":
            assert e["max_rel_err"] <= e["tolerance"]
            assert e["median_ms"] > 0 and e["min_ms"] <= e["median_ms"]
            assert e["repeats"] >= 1
    f32 = [e for e in entries if e["contender"] == "torch_int4_f32" and e["status"] == "ok"]
    assert f32 and all(e["M"] == 1 for e in f32)


def test_quick_run_json_fields(quick_results, tmp_path):
    path = common.write_json(tmp_path / "out" / "gemv.json", quick_results)
    data = json.loads(path.read_text())
    assert data["schema"] == gemv.SCHEMA
    for key in (
        "machine",
        "config",
        "conventions",
        "bandwidth",
        "contenders",
        "results",
        "targets",
        "warnings",
        "other_cpu_use",
    ):
        assert key in data
    machine = data["machine"]
    for key in ("cpu_model", "usable_cores", "numpy", "torch", "date", "threads", "caches"):
        assert key in machine
    assert data["bandwidth"]["gbps"] > 0 and "convention" in data["bandwidth"]
    assert data["bandwidth"]["bytes"] == gemv.QUICK_CONFIG.bandwidth_bytes
    assert set(BASELINES) <= set(data["contenders"])
    ok = [e for e in data["results"] if e["status"] == "ok"]
    for e in ok:
        for key in (
            "contender",
            "family",
            "N",
            "K",
            "M",
            "weights",
            "median_ms",
            "min_ms",
            "speedup_vs_numpy_fp32",
            "speedup_vs_torch_int4",
            "gbps",
            "bandwidth_fraction",
            "bytes_read",
            "other_cpu_use",
        ):
            assert key in e, key
        assert e["speedup_vs_numpy_fp32"] > 0 and e["speedup_vs_torch_int4"] > 0
    fp32 = next(e for e in ok if e["contender"] == "numpy_fp32")
    assert fp32["speedup_vs_numpy_fp32"] == pytest.approx(1.0)
    assert len(data["targets"]) == 5
    for t in data["targets"]:
        assert t["reached"] is False and "bittile_w4" in " ".join(t["numbers"]["missing"])
    report = gemv.format_report(data)
    assert "numpy_dequant" in report and "not measured" in report


# ------------------------------------------------------------------------------ checks


def _dense_result(case):
    return case.x @ case.weight.dequantize(np.float32).T


def test_check_rejects_wrong_results(registry):
    def off_by_a_little(case):
        return lambda: _dense_result(case) * (1 + 1e-3)

    def swapped_nibbles(case):  # a classic packing bug: adjacent codes exchanged
        w = case.weight
        codes = w.codes.reshape(case.n, -1, 2)[:, :, ::-1].reshape(case.n, case.k)
        wrong = (codes.astype(np.float32) - np.repeat(w.zeros, w.group_size, 1)) * np.repeat(
            w.scales, w.group_size, 1
        )
        return lambda: case.x @ wrong.T

    def bad_shape(case):
        return lambda: np.zeros(case.n + 1, np.float32)

    def nan_result(case):
        return lambda: np.full((case.m, case.n), np.nan, np.float32)

    def raises(case):
        def run():
            raise RuntimeError("kernel exploded")

        return run

    def correct(case):
        return lambda: _dense_result(case)

    registry.register_contender("bittile_off", off_by_a_little)
    registry.register_contender("bittile_swapped", swapped_nibbles, tolerance=gemv.TOL_BF16)
    registry.register_contender("bittile_shape", bad_shape)
    registry.register_contender("bittile_nan", nan_result)
    registry.register_contender("bittile_raises", raises)
    registry.register_contender("bittile_correct", correct)
    config = gemv.RunConfig(
        **{
            **TINY.__dict__,
            "contenders": (
                "bittile_off",
                "bittile_swapped",
                "bittile_shape",
                "bittile_nan",
                "bittile_raises",
                "bittile_correct",
            ),
        }
    )
    res = gemv.run_benchmark(config, log=None)
    by_name: dict[str, set] = {}
    for e in res["results"]:
        by_name.setdefault(e["contender"], set()).add(e["status"])
        if e["status"] != "ok":
            assert "median_ms" not in e  # never a time for a wrong result
    assert by_name["bittile_off"] == {"wrong_result"}
    assert by_name["bittile_swapped"] == {"wrong_result"}
    assert by_name["bittile_shape"] == {"wrong_result"}
    assert by_name["bittile_nan"] == {"wrong_result"}
    assert by_name["bittile_raises"] == {"error"}
    assert by_name["bittile_correct"] == {"ok"}
    report = gemv.format_report(res)
    assert "WRONG_RESULT" in report and "ERROR" in report


def test_check_result_directly():
    rng = np.random.default_rng(4)
    weight = gemv.make_weight(32, 128, gemv.WeightFormat.parse("u2"), 128, rng)
    case = gemv.GemvCase(1, weight, gemv.make_activations(1, 128, rng))
    good = _dense_result(case)
    assert gemv.check_result(good, case, gemv.TOL_FP32)[0]
    assert gemv.check_result(good[0], case, gemv.TOL_FP32)[0]  # [N] is fine for M = 1
    assert not gemv.check_result(good + 0.5 * np.abs(good).max(), case, gemv.TOL_BF16)[0]
    assert not gemv.check_result(good[:, :-1], case, gemv.TOL_FP32)[0]
    torch = pytest.importorskip("torch")
    assert gemv.check_result(torch.from_numpy(good).to(torch.bfloat16), case, gemv.TOL_BF16)[0]


def test_setup_errors_and_not_applicable(registry):
    def broken_setup(case):
        raise ValueError("no such layout")

    registry.register_contender("bittile_broken", broken_setup)
    registry.register_contender("bittile_u2_only", lambda c: None if c.fmt.bits != 2 else 0)
    config = gemv.RunConfig(
        **{
            **TINY.__dict__,
            "weights": ("u4",),
            "ms": (1,),
            "contenders": ("bittile_broken", "bittile_u2_only"),
        }
    )
    res = gemv.run_benchmark(config, log=None)
    status = {e["contender"]: e for e in res["results"]}
    assert status["bittile_broken"]["status"] == "error"
    assert "no such layout" in status["bittile_broken"]["error"]
    assert status["bittile_u2_only"]["status"] == "not_applicable"


def test_register_contender_validation(registry):
    with pytest.raises(ValueError, match="already registered"):
        registry.register_contender("numpy_fp32", lambda c: None)
    with pytest.raises(ValueError, match="family"):
        registry.register_contender("x", lambda c: None, family="other")
    with pytest.raises(ValueError, match="unknown contenders"):
        gemv.run_benchmark(gemv.RunConfig(**{**TINY.__dict__, "contenders": ("nope",)}), log=None)


# ----------------------------------------------------------------------------- targets


def _entry(contender, n, k, m, weights, ms, family="bittile", status="ok"):
    bits = None if weights is None else int(weights[1:])
    e = {
        "contender": contender,
        "family": family,
        "N": n,
        "K": k,
        "M": m,
        "weights": weights,
        "bits": bits,
        "status": status,
        "weight_bytes": None if bits is None else n * k * bits // 8,
    }
    if status == "ok":
        e["median_ms"] = ms
    return e


def _synthetic(entries, gbps=40.0):
    return {"results": entries, "bandwidth": {"gbps": gbps}}


def test_check_targets_synthetic():
    b = "baseline"
    entries = [
        _entry("numpy_fp32", 4096, 4096, 1, None, 1.2, b),
        _entry("torch_int4", 4096, 4096, 1, "u4", 0.53, b),
        _entry("torch_int4", 4096, 4096, 32, "u4", 7.3, b),
        _entry("bittile_a", 4096, 4096, 1, "u4", 0.40),
        _entry("bittile_b", 4096, 4096, 1, "u4", 0.30),  # the fastest bittile W4
        _entry("bittile_bad", 4096, 4096, 1, "u4", None, status="wrong_result"),
        _entry("bittile_a", 4096, 4096, 1, "u2", 0.20),  # 0.30 / 0.20 = 1.5 < 1.7
        _entry("bittile_a", 4096, 4096, 32, "u4", 7.0),
        _entry("bittile_a", 11008, 4096, 1, "u4", 1.0),  # 22.5 MB in 1 ms: 22.5 GB/s
    ]
    targets = gemv.check_targets(_synthetic(entries))
    assert len(targets) == 5
    reached = [t[1] for t in targets]
    assert reached == [True, True, False, True, True]
    t1 = targets[0][2]
    assert t1["bittile_w4_contender"] == "bittile_b"
    assert t1["speedup"] == pytest.approx(0.53 / 0.30)
    assert targets[1][2]["speedup"] == pytest.approx(4.0)
    assert targets[2][2]["speedup"] == pytest.approx(1.5)
    assert targets[3][2]["speedup"] == pytest.approx(7.3 / 7.0)
    bw = targets[4][2]
    assert bw["gbps"] == pytest.approx(11008 * 4096 / 2 / 1e6)
    assert bw["fraction"] == pytest.approx(bw["gbps"] / 40.0)

    # Slower bittile kernels: the same targets now fail, with their numbers.
    slow = [dict(e) for e in entries]
    for e in slow:
        if e["family"] == "bittile" and e["status"] == "ok":
            e["median_ms"] *= 3
    reached = [t[1] for t in gemv.check_targets(_synthetic(slow))]
    assert reached == [False, False, False, False, False]

    # torch_int4 measured only as i4 still serves as the reference.
    i4_only = [dict(e, weights="i4") if e["contender"] == "torch_int4" else e for e in entries]
    assert gemv.check_targets(_synthetic(i4_only))[0][1] is True


def test_check_targets_without_bittile():
    entries = [_entry("numpy_fp32", 4096, 4096, 1, None, 1.2, "baseline")]
    targets = gemv.check_targets(_synthetic(entries))
    assert [t[1] for t in targets] == [False] * 5
    assert targets[0][2]["missing"] == ["bittile_w4", "torch_int4"]
    assert targets[1][2]["missing"] == ["bittile_w4"]
    assert targets[4][2]["missing"] == ["bittile_w4"]


# ------------------------------------------------------------------------ utilities, CLI


def test_time_callable_budget_and_counts():
    calls = []
    timing = common.time_callable(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(calls) == 7 and timing.repeats == 5 and timing.min_ns <= timing.median_ns
    calls.clear()
    timing = common.time_callable(
        lambda: calls.append(1), warmup=0, repeats=1000, min_repeats=3, max_seconds=0.0
    )
    assert timing.repeats == 3 and len(calls) == 3
    calls.clear()
    timing = common.time_callable(
        lambda: calls.append(1), warmup=0, repeats=2, min_seconds=0.02, max_repeats=10**7
    )
    assert timing.repeats > 2 and timing.repeats == len(calls)  # timed for >= 20 ms
    timing = common.time_callable(lambda: None, warmup=0, repeats=2, min_seconds=60, max_repeats=50)
    assert timing.repeats == 50


def test_busy_warning():
    assert common.busy_warning(None) is None and common.busy_warning(0.02) is None
    assert "35%" in common.busy_warning(0.35)
    busy = common.other_cpu_use(0.05)
    assert busy is None or 0.0 <= busy <= 1.0
    with common.OtherCpuMeter() as meter:
        sum(range(2_000_000))  # our own work is not counted as other processes' work
    assert meter.fraction is None or 0.0 <= meter.fraction <= 1.0


def test_parsing_and_quick_overrides():
    assert gemv.WeightFormat.parse("u3") == gemv.WeightFormat(3, False)
    assert gemv.WeightFormat.parse("4").name == "u4"
    assert gemv.WeightFormat.parse("I4").signed
    for bad in ("u9", "i1", "f4", "u0"):
        with pytest.raises(ValueError):
            gemv.WeightFormat.parse(bad)
    args = gemv.build_parser().parse_args(
        ["--quick", "--shapes", "128x256,32x128", "--bits", "u2,4", "--m", "1,8", "--repeats", "5"]
    )
    config = gemv.config_from_args(args)
    assert config.shapes == ((128, 256), (32, 128))
    assert config.weights == ("u2", "u4") and config.ms == (1, 8) and config.repeats == 5
    assert config.quick and config.bandwidth_bytes == gemv.QUICK_CONFIG.bandwidth_bytes
    default = gemv.config_from_args(gemv.build_parser().parse_args([]))
    assert default == gemv.RunConfig()
    assert default.shapes == ((4096, 4096), (11008, 4096), (4096, 11008))
    assert default.weights == ("u1", "u2", "u3", "u4", "u8", "i4")
    assert default.ms == (1, 32) and default.group_size == 128


def test_plot(quick_results, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "import_pyplot", lambda: None)
    assert gemv.write_plot(quick_results, tmp_path / "none.png") is None
    monkeypatch.undo()
    pytest.importorskip("matplotlib")
    path = gemv.write_plot(quick_results, tmp_path / "gemv.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_script_runs_from_repo_root(tmp_path):
    out = tmp_path / "gemv.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/gemv.py",
            "--quick",
            "--bits",
            "u4",
            "--m",
            "1",
            "--bandwidth-mb",
            "2",
            "--out",
            str(out),
        ],
        cwd=common.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch_int4" in proc.stdout and "targets:" in proc.stdout
    data = json.loads(out.read_text())
    assert data["config"]["weights"] == ["u4"] and data["config"]["m"] == [1]
    assert ("PNG: " + str(out.with_suffix(".png"))) in proc.stdout or data["plot_note"]


def test_disturbed_timings_are_retried_and_flagged(registry, monkeypatch):
    readings = []

    class FakeMeter:
        def __init__(self):
            self.fraction = None

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fraction = readings.pop(0)

    monkeypatch.setattr(common, "OtherCpuMeter", FakeMeter)
    registry.register_contender("bittile_dense", lambda c: lambda: _dense_result(c))
    config = gemv.RunConfig(
        **{
            **TINY.__dict__,
            "weights": ("u4",),
            "ms": (1,),
            "retries": 2,
            "retry_wait_seconds": 0.0,
            "contenders": ("bittile_dense",),
        }
    )

    readings[:] = [0.6, 0.01]  # disturbed, then quiet: the quiet attempt is kept
    (entry,) = gemv.run_benchmark(config, log=None)["results"]
    assert entry["attempts"] == 2 and entry["other_cpu_use"] == 0.01 and not readings

    readings[:] = [0.6, 0.5, 0.7]  # always disturbed: the least disturbed is kept, flagged
    res = gemv.run_benchmark(config, log=None)
    (entry,) = res["results"]
    assert entry["attempts"] == 3 and entry["other_cpu_use"] == 0.5
    assert any("1 of 1 timings" in w for w in res["warnings"])
    assert "other processes 50% busy" in gemv.format_report(res)
