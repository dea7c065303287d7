"""sentence-transformers/all-MiniLM-L6-v2 in numpy, in fp32, without torch.

The model is a 6-layer BERT (hidden 384, 12 heads) whose token states are mean-pooled
over the attention mask and L2-normalised, exactly as sentence-transformers runs it:
inputs are cut to ``max_seq_length`` (256) word pieces, [CLS] and [SEP] included.
tests/unit/test_minilm.py holds it to sentence-transformers' own output (the largest
difference seen in any coordinate: 2e-7).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load_file
from tokenizers import Tokenizer

Floats = NDArray[np.float32]

# Abramowitz & Stegun 7.1.26: erf to 1.5e-7 absolute, which fp32 barely resolves anyway.
# Coefficients a5 down to a1, for Horner's rule.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(
    np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
)
_SQRT_HALF = np.float32(np.sqrt(0.5))
_GELU_ROWS = 32  # 32 x 1536 floats: 196 KB per temporary
_MASKED = np.finfo(np.float32).min  # added to the scores of padding, as transformers does


@dataclass(frozen=True)
class _Norm:
    weight: Floats
    bias: Floats
    eps: float

    def __call__(self, x: Floats) -> Floats:
        centred = x - x.mean(axis=-1, keepdims=True)
        variance = np.square(centred).mean(axis=-1, keepdims=True)
        scaled: Floats = centred / np.sqrt(variance + np.float32(self.eps))
        return scaled * self.weight + self.bias


@dataclass(frozen=True)
class _Layer:
    """One encoder layer; matrices are stored transposed (in, out), Q/K/V side by side."""

    qkv: Floats
    qkv_bias: Floats
    attention_out: Floats
    attention_out_bias: Floats
    attention_norm: _Norm
    ffn_in: Floats
    ffn_in_bias: Floats
    ffn_out: Floats
    ffn_out_bias: Floats
    ffn_norm: _Norm


class SentenceEncoder:
    """Texts in, L2-normalised float32 rows out. Thread-safe once loaded; not async."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        word: Floats,
        position: Floats,
        token_type: Floats,
        norm: _Norm,
        layers: list[_Layer],
        heads: int,
    ) -> None:
        self._tokenizer = tokenizer
        self._word = word
        self._position = position
        self._token_type = token_type
        self._norm = norm
        self._layers = layers
        self._heads = heads

    @classmethod
    def load(cls, folder: Path, max_tokens: int = 256) -> SentenceEncoder:
        """Read a sentence-transformers BERT folder (model.safetensors, tokenizer.json,
        config.json); inputs longer than ``max_tokens`` word pieces are truncated."""
        config = json.loads((folder / "config.json").read_text())
        if config.get("hidden_act") != "gelu":
            raise ValueError(f"{folder}: hidden_act {config.get('hidden_act')!r} is not gelu")
        if max_tokens > config["max_position_embeddings"]:
            raise ValueError(f"max_tokens {max_tokens} exceeds the model's position table")
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()  # tokenizer.json pads every input to 128: pad per batch instead
        tokenizer.enable_truncation(max_tokens)
        tensors = load_file(folder / "model.safetensors")
        embeddings_key = next(k for k in tensors if k.endswith("embeddings.word_embeddings.weight"))
        prefix = embeddings_key.removesuffix("embeddings.word_embeddings.weight")
        eps = float(config["layer_norm_eps"])

        def get(name: str) -> Floats:
            return np.ascontiguousarray(tensors[prefix + name], dtype=np.float32)

        def matrix(name: str) -> Floats:  # torch Linear keeps (out, in); x @ W wants (in, out)
            return np.ascontiguousarray(get(name + ".weight").T)

        def norm(name: str) -> _Norm:
            return _Norm(get(name + ".weight"), get(name + ".bias"), eps)

        layers = []
        for i in range(config["num_hidden_layers"]):
            at = f"encoder.layer.{i}."
            parts = [f"{at}attention.self.{p}" for p in ("query", "key", "value")]
            layers.append(
                _Layer(
                    qkv=np.concatenate([matrix(p) for p in parts], axis=1),
                    qkv_bias=np.concatenate([get(p + ".bias") for p in parts]),
                    attention_out=matrix(at + "attention.output.dense"),
                    attention_out_bias=get(at + "attention.output.dense.bias"),
                    attention_norm=norm(at + "attention.output.LayerNorm"),
                    ffn_in=matrix(at + "intermediate.dense"),
                    ffn_in_bias=get(at + "intermediate.dense.bias"),
                    ffn_out=matrix(at + "output.dense"),
                    ffn_out_bias=get(at + "output.dense.bias"),
                    ffn_norm=norm(at + "output.LayerNorm"),
                )
            )
        return cls(
            tokenizer,
            word=get("embeddings.word_embeddings.weight"),
            position=get("embeddings.position_embeddings.weight")[:max_tokens],
            token_type=get("embeddings.token_type_embeddings.weight")[0],
            norm=norm("embeddings.LayerNorm"),
            layers=layers,
            heads=int(config["num_attention_heads"]),
        )

    @property
    def dimensions(self) -> int:
        return int(self._word.shape[1])

    @property
    def max_tokens(self) -> int:
        return int(self._position.shape[0])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text as the model sees them: [CLS] and [SEP] in, truncated."""
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Floats:
        """One L2-normalised row per text, in the order given.

        Texts are sorted by length and run in passes of at most ``batch_size``, each
        padded to its longest text; a pass also ends where the next text is under half
        as long as that, so one long text does not pad a batch of short ones.
        """
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        group: list[int] = []
        for i in sorted(range(len(ids)), key=lambda i: -len(ids[i])):
            if group and (len(group) == batch_size or 2 * len(ids[i]) < len(ids[group[0]])):
                out[group] = self._forward([ids[j] for j in group])
                group = []
            group.append(i)
        if group:
            out[group] = self._forward([ids[j] for j in group])
        return out

    def _forward(self, batch: list[list[int]]) -> Floats:
        rows, width = len(batch), max(len(ids) for ids in batch)
        tokens = np.zeros((rows, width), dtype=np.int64)
        mask = np.zeros((rows, width), dtype=np.float32)
        for row, ids in enumerate(batch):
            tokens[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        x = self._norm((self._word[tokens] + self._token_type) + self._position[:width])
        # (rows * width, hidden) for the dense layers: one matrix product each.
        x = x.reshape(rows * width, -1)
        scores_bias = ((1.0 - mask) * _MASKED)[:, None, None, :]
        for layer in self._layers:
            x = self._layer(x, layer, rows, scores_bias)
        states = x.reshape(rows, width, -1)
        counts = np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        pooled: Floats = np.einsum("rth,rt->rh", states, mask) / counts
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        normalised: Floats = pooled / norms
        return normalised

    def _layer(self, x: Floats, layer: _Layer, rows: int, scores_bias: Floats) -> Floats:
        tokens, hidden = x.shape
        width, head_size = tokens // rows, hidden // self._heads
        qkv = (x @ layer.qkv + layer.qkv_bias).reshape(rows, width, 3, self._heads, head_size)
        query, key, value = qkv.transpose(2, 0, 3, 1, 4)  # each (rows, heads, width, head_size)
        scores = (query @ key.transpose(0, 1, 3, 2)) / np.float32(np.sqrt(head_size))
        scores += scores_bias
        probabilities = _softmax(scores)
        context = (probabilities @ value).transpose(0, 2, 1, 3).reshape(tokens, hidden)
        x = layer.attention_norm(context @ layer.attention_out + layer.attention_out_bias + x)
        inner = _gelu(x @ layer.ffn_in + layer.ffn_in_bias)
        return layer.ffn_norm(inner @ layer.ffn_out + layer.ffn_out_bias + x)


def _softmax(scores: Floats) -> Floats:
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def _gelu(x: Floats) -> Floats:
    """x * Phi(x) in its exact erf form (BERT's "gelu"), not the tanh approximation.

    In place, a block of rows at a time: the temporaries then stay in the CPU cache,
    which makes it twice as fast as whole-array operations."""
    for start in range(0, x.shape[0], _GELU_ROWS):
        block = x[start : start + _GELU_ROWS]
        block *= np.float32(0.5) * (np.float32(1.0) + _erf(block * _SQRT_HALF))
    return x


def _erf(x: Floats) -> Floats:
    z = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + _ERF_P * z)
    poly = np.full_like(t, _ERF_A[0])
    for a in _ERF_A[1:]:
        poly *= t
        poly += a
    poly *= t
    y: Floats = np.float32(1.0) - poly * np.exp(-z * z)
    return np.copysign(y, x)
