"""all-MiniLM-L6-v2 on bittile's kernels: every Linear through ``bittile.stdlib.linear`` with
quantized weights, attention through ``bittile.stdlib.attention`` (optionally on KIVI-quantized
K/V), compared with the same model in plain torch fp32, measured in the same run.

    python examples/minilm/run.py [--backend llvm] [--quick]
    bittile example minilm

prints, per configuration, the mean and minimum cosine similarity of the sentence embeddings
against torch fp32, the model's weight bytes, and sentences per second against torch fp32.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from minilm.model import MiniLM, load_weights, torch_attention, torch_linear  # noqa: E402

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome, I loved every minute of it.",
    "Quantized kernels trade a little accuracy for a lot of memory bandwidth.",
    "The cat sits outside on the warm stone steps.",
]
LINEAR_NAMES = ("attention.self.query", "attention.self.key", "attention.self.value",
                "attention.output.dense", "intermediate.dense", "output.dense")


def bittile_model(weights, config, dtype, group: int, backend: str, kv_bits: int | None):
    """MiniLM whose Linears and attention run on bittile (weights quantized once here)."""
    import bittile
    from bittile import stdlib

    quantized, nbytes = {}, 0
    for i in range(config.layers):
        for name in LINEAR_NAMES:
            key = f"encoder.layer.{i}.{name}"
            if dtype is None:
                quantized[key] = None
                nbytes += weights[f"{key}.weight"].numel() * 4
            else:
                qw = stdlib.quantize_weight(weights[f"{key}.weight"], dtype=dtype,
                                            group_size=group)
                quantized[key] = qw
                nbytes += qw.nbytes
    embeddings = sum(v.numel() * 4 for k, v in weights.items() if not k.startswith("encoder.")
                     or "LayerNorm" in k or k.endswith(".bias"))

    def linear(x, name):
        bias = weights[f"{name}.bias"]
        qw = quantized[name]
        if qw is None:
            return torch.nn.functional.linear(x, weights[f"{name}.weight"], bias)
        return stdlib.linear(x.contiguous(), qw, bias, backend=backend)

    def attention(q, k, v):
        if kv_bits is not None:
            k = _kivi(k, kv_bits, axis="channel")
            v = _kivi(v, kv_bits, axis="token")
        return stdlib.attention(q, k, v, backend=backend)

    del bittile
    return MiniLM(weights, config, linear, attention), nbytes + embeddings


def _kivi(x, bits: int, axis: str):
    """KIVI's quantization of a K or V tensor [1, H, L, D]: keys per channel (groups along
    tokens), values per token (groups along channels); dequantized for the attention."""
    from bittile import stdlib

    length, dim = x.shape[-2], x.shape[-1]
    group = dim if axis == "token" else length
    quant = stdlib.kivi_quantize(x, bits=bits, group_size=group,
                                 axis=-1 if axis == "token" else -2)
    return torch.as_tensor(np.asarray(quant.dequantize()), dtype=x.dtype).reshape(x.shape)


def timed_encode(model, sentences, repeats: int):
    model.encode(sentences)  # warm up: compiles the kernels for every sentence length
    start = time.perf_counter()
    for _ in range(repeats):
        out = model.encode(sentences)
    seconds = (time.perf_counter() - start) / repeats
    return out, len(sentences) / seconds


def run(backend: str = "llvm", quick: bool = False, out=print) -> list[dict]:
    import bittile

    torch.set_num_threads(2)
    weights, config = load_weights()
    sentences = SENTENCES[:2] if quick else SENTENCES
    repeats = 1 if quick else 2
    reference = MiniLM(weights, config, torch_linear(weights), torch_attention)
    ref_emb, ref_speed = timed_encode(reference, sentences, repeats)
    ref_bytes = sum(v.numel() * 4 for v in weights.values() if v.dtype == torch.float32)
    configs = [("fp32", None, 128, None), ("u8 g128", bittile.u8, 128, None),
               ("u4 g128", bittile.u4, 128, None)]
    if not quick:
        configs += [("u4 g32", bittile.u4, 32, None), ("u3 g128", bittile.u3, 128, None),
                    ("u3 g32", bittile.u3, 32, None), ("u2 g128", bittile.u2, 128, None),
                    ("u2 g32", bittile.u2, 32, None),
                    ("u4 g128 + KIVI-4 KV", bittile.u4, 128, 4),
                    ("u4 g128 + KIVI-2 KV", bittile.u4, 128, 2)]
    rows = [{"config": "torch fp32", "mean_cos": 1.0, "min_cos": 1.0, "weight_bytes": ref_bytes,
             "sentences_per_s": ref_speed, "vs_torch": 1.0}]
    for name, dtype, group, kv_bits in configs:
        model, nbytes = bittile_model(weights, config, dtype, group, backend, kv_bits)
        emb, speed = timed_encode(model, sentences, repeats)
        cos = np.sum(emb * ref_emb, axis=1)
        rows.append({"config": f"bittile {name}", "mean_cos": float(cos.mean()),
                     "min_cos": float(cos.min()), "weight_bytes": nbytes,
                     "sentences_per_s": speed, "vs_torch": speed / ref_speed})
    out(f"all-MiniLM-L6-v2, {len(sentences)} sentences, backend {backend}; cosine similarity "
        "of embeddings against torch fp32; speed measured in this run")
    out(f"{'configuration':<28} {'mean cos':>9} {'min cos':>9} {'weight MB':>10} "
        f"{'sent/s':>8} {'vs torch':>9}")
    for r in rows:
        out(f"{r['config']:<28} {r['mean_cos']:9.5f} {r['min_cos']:9.5f} "
            f"{r['weight_bytes'] / 1e6:10.2f} {r['sentences_per_s']:8.1f} "
            f"{r['vs_torch']:8.2f}x")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="llvm")
    parser.add_argument("--quick", action="store_true", help="two sentences, u8 and u4 only")
    args = parser.parse_args(argv)
    run(args.backend, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
