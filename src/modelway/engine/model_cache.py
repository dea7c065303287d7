"""Re-quantized copies of local models, made once and kept in a cache directory.

The bundled SmolLM2 ships as Q4_1, a type for which llama.cpp has no repacked CPU
kernels; a Q4_0 copy of the same weights prefills ~2.9x and decodes ~1.6-2x faster
here (docs/benchmarks.md). Serving one is the deployment's explicit choice
(``quantization:``), never the gateway's.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from modelway.engine.quantize import QuantizeError, quantize
from modelway.protocol.errors import Unavailable


def cache_dir() -> Path:
    configured = os.environ.get("MODELWAY_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelway" / "models"


def quantized_copy(source: Path, type_name: str) -> Path:
    """The path of ``source`` re-quantized to ``type_name``, made if it is missing."""
    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = cache_dir() / f"{source.stem}.{type_name}.{key.hexdigest()[:12]}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        quantize(source, target, type_name, allow_requantize=True)
    except QuantizeError as exc:
        raise Unavailable(f"cannot re-quantize {source} to {type_name}: {exc}") from None
    return target
