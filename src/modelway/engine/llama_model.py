"""One GGUF model and its llama.cpp context, through llama.cpp's C API.

The context holds one KV stream per sequence slot (``kv_unified`` off), each of
``context_size`` cells, so a sequence can never starve another of cache space.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as llama

from modelway.engine.chat_template import ChatTemplate
from modelway.protocol.errors import Unavailable

_quiet_log: Any = None


def silence_llama_logs() -> None:
    """llama.cpp logs every load to stderr; the gateway's own logs say what matters."""
    global _quiet_log  # the callback must outlive every call into llama.cpp
    if _quiet_log is None:
        _quiet_log = llama.llama_log_callback(lambda level, text, data: None)
        llama.llama_log_set(_quiet_log, ctypes.c_void_p(0))


@dataclass(frozen=True)
class ContextShape:
    context_size: int  # cells per sequence
    max_parallel: int
    batch_size: int
    threads: int | None
    flash_attention: bool


class LlamaModel:
    def __init__(self, path: Path, shape: ContextShape) -> None:
        if not path.is_file():
            raise Unavailable(f"model file not found: {path}")
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise Unavailable(f"not a GGUF model file: {path}")
        silence_llama_logs()
        llama.llama_backend_init()
        self.path = path
        self.shape = shape
        self.model = llama.llama_model_load_from_file(
            str(path).encode(), llama.llama_model_default_params()
        )
        if not self.model:
            raise Unavailable(f"cannot load model {path}: llama.cpp refused the file")
        params = llama.llama_context_default_params()
        params.n_ctx = shape.context_size * shape.max_parallel
        params.n_seq_max = shape.max_parallel
        params.n_batch = shape.batch_size
        params.n_ubatch = shape.batch_size
        threads = shape.threads or os.cpu_count() or 1
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = False
        params.flash_attn_type = 1 if shape.flash_attention else 0
        params.no_perf = True
        self.ctx = llama.llama_init_from_model(self.model, params)
        if not self.ctx:
            llama.llama_model_free(self.model)
            raise Unavailable(f"cannot create a llama.cpp context for {path}")
        self.memory = llama.llama_get_memory(self.ctx)
        self.vocab = llama.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama.llama_vocab_n_tokens(self.vocab))
        self.eog_tokens = [
            t for t in range(self.n_vocab) if llama.llama_vocab_is_eog(self.vocab, t)
        ]
        self.template = ChatTemplate(
            self._chat_template(),
            self.token_text(llama.llama_vocab_bos(self.vocab)),
            self.token_text(llama.llama_vocab_eos(self.vocab)),
        )
        self._piece = ctypes.create_string_buffer(256)

    def close(self) -> None:
        if self.ctx:
            llama.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama.llama_model_free(self.model)
            self.model = None

    def _chat_template(self) -> str | None:
        raw = llama.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama.llama_token * capacity)()
        n = llama.llama_tokenize(
            self.vocab, data, len(data), tokens, capacity, add_special, parse_special
        )
        if n < 0:  # the buffer was too small: -n is the size needed
            capacity = -n
            tokens = (llama.llama_token * capacity)()
            n = llama.llama_tokenize(
                self.vocab, data, len(data), tokens, capacity, add_special, parse_special
            )
        return list(tokens[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token (possibly part of a UTF-8 character)."""
        n = llama.llama_token_to_piece(self.vocab, token, self._piece, 256, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
            return buf.raw[:n]
        return self._piece.raw[:n]

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(256)
        n = llama.llama_token_to_piece(self.vocab, token, buf, 256, 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(llama.llama_vocab_is_eog(self.vocab, token))
