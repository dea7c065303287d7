"""`modelway quantize`: re-quantize a GGUF model with llama.cpp's quantizer.

llama.cpp aborts the whole process on some bad inputs instead of returning an error, so
everything that can be checked from Python is checked before calling it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import llama_cpp

GGUF_MAGIC = b"GGUF"

QUANT_TYPES: dict[str, int] = {
    "f32": llama_cpp.LLAMA_FTYPE_ALL_F32,
    "f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    "bf16": llama_cpp.LLAMA_FTYPE_MOSTLY_BF16,
    "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "q6_k": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K,
    "q5_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M,
    "q5_k_s": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_S,
    "q5_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_0,
    "q5_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_1,
    "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "q4_k_s": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_S,
    "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
    "q4_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1,
    "q3_k_l": llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_L,
    "q3_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_M,
    "q3_k_s": llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_S,
    "q2_k": llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K,
    "iq4_nl": llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_NL,
    "iq4_xs": llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_XS,
}
"""Target types offered, lowercase name -> llama.cpp `LLAMA_FTYPE_*`. The IQ1/IQ2/IQ3 types
are left out: they are meant to be used with an importance matrix, which this does not take,
and llama.cpp aborts on the IQ1/IQ2 ones without it."""

_UNQUANTIZED = frozenset(
    {
        llama_cpp.LLAMA_FTYPE_ALL_F32,
        llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
        llama_cpp.LLAMA_FTYPE_MOSTLY_BF16,
    }
)

# Every file type llama.cpp knows, for naming an input's type in messages.
_FTYPE_NAMES: dict[int, str] = {
    value: re.sub(r"^LLAMA_FTYPE_(MOSTLY|ALL)_", "", name).lower()
    for name, value in vars(llama_cpp).items()
    if name.startswith(("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_")) and isinstance(value, int)
}

# ggml_log_level
_LOG_WARN = 3
_LOG_ERROR = 4
_LOG_CONT = 5

_TENSOR_PROGRESS = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]")
_FALLBACK_SUMMARY = re.compile(r"(\d+ of \d+ tensor\(s\) required fallback quantization)")

Progress = Callable[[int, int], None]


class QuantizeError(Exception):
    """The quantization was refused or failed; the message says why."""


@dataclass(frozen=True)
class QuantizeResult:
    input: Path
    output: Path
    type_name: str
    input_bytes: int
    output_bytes: int
    seconds: float
    # e.g. "180 of 272 tensor(s) required fallback quantization": a k-quant or IQ type
    # needs rows that are a multiple of 256 wide, and llama.cpp substitutes another type
    # for tensors that are not.
    fallback: str | None = None


def quantize(
    input: Path,
    output: Path,
    type_name: str,
    *,
    allow_requantize: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
) -> QuantizeResult:
    """Write `output`, a copy of the GGUF model `input` quantized to `type_name`.

    The file is written under a temporary name next to `output` and renamed when complete,
    so a failed or interrupted run never leaves a truncated model at `output`.
    `progress(done, total)` is called as tensors are processed.
    """
    ftype = _check(input, output, type_name, allow_requantize=allow_requantize, threads=threads)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or 0  # 0: llama.cpp uses every hardware thread
    params.allow_requantize = allow_requantize

    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    log = _Log(progress)
    started = time.monotonic()
    try:
        with log.installed():
            status = llama_cpp.llama_model_quantize(
                os.fsencode(input), os.fsencode(partial), ctypes.byref(params)
            )
        if status != 0:
            detail = "; ".join(log.errors) or "no error message from llama.cpp"
            raise QuantizeError(f"llama.cpp failed to quantize {input} (code {status}): {detail}")
        if not partial.is_file():
            raise QuantizeError(f"llama.cpp reported success but wrote no file for {output}")
        try:
            os.replace(partial, output)
        except OSError as exc:
            raise QuantizeError(f"cannot write {output}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    seconds = time.monotonic() - started
    return QuantizeResult(
        input=input,
        output=output,
        type_name=type_name.lower(),
        input_bytes=input.stat().st_size,
        output_bytes=output.stat().st_size,
        seconds=seconds,
        fallback=log.fallback,
    )


def quantize_command(
    input: str, output: str, type_name: str, *, allow_requantize: bool, threads: int | None
) -> int:
    """The `modelway quantize` command: one summary line on stdout, or an error on stderr."""
    show_progress = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        print(f"\rquantizing: {done}/{total} tensors", end="", file=sys.stderr, flush=True)

    try:
        result = quantize(
            Path(input),
            Path(output),
            type_name,
            allow_requantize=allow_requantize,
            threads=threads,
            progress=progress if show_progress else None,
        )
    except QuantizeError as exc:
        if show_progress:
            print(file=sys.stderr)
        print(f"modelway quantize: {exc}", file=sys.stderr)
        return 1
    if show_progress:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if result.fallback:
        print(
            f"note: {result.fallback} (their rows are not a multiple of 256 wide, so "
            f"llama.cpp used another type for them)",
            file=sys.stderr,
        )
    print(
        f"wrote {output}: {result.type_name}, {_size(result.input_bytes)} -> "
        f"{_size(result.output_bytes)} in {result.seconds:.1f} s"
    )
    return 0


def _check(
    input: Path, output: Path, type_name: str, *, allow_requantize: bool, threads: int | None
) -> int:
    ftype = QUANT_TYPES.get(type_name.lower())
    if ftype is None:
        raise QuantizeError(f"unknown type '{type_name}'; valid types: {', '.join(QUANT_TYPES)}")
    if threads is not None and threads < 1:
        raise QuantizeError(f"--threads must be at least 1, not {threads}")
    if not input.exists():
        raise QuantizeError(f"input not found: {input}")
    if not input.is_file():
        raise QuantizeError(f"input is not a file: {input}")
    try:
        with input.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise QuantizeError(f"cannot read input {input}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise QuantizeError(f"input is not a GGUF file (it does not start with 'GGUF'): {input}")
    if output.is_dir():
        raise QuantizeError(f"output is a directory, not a file path: {output}")
    if not output.parent.is_dir():
        raise QuantizeError(f"output folder does not exist: {output.parent}")
    if _same_file(input, output):
        raise QuantizeError(f"output is the input file; choose another output path: {output}")
    current = read_gguf_file_type(input)
    if current is not None and current not in _UNQUANTIZED and not allow_requantize:
        name = _FTYPE_NAMES.get(current, f"file type {current}")
        raise QuantizeError(
            f"{input} is already quantized ({name}); quantizing it again loses more quality "
            f"than quantizing the f16/bf16/f32 original. Pass --allow-requantize to do it anyway."
        )
    return ftype


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _size(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB"


class _Log:
    """Receives llama.cpp's log while installed: keeps errors, reports progress, drops the rest."""

    def __init__(self, progress: Progress | None) -> None:
        self.errors: list[str] = []
        self.fallback: str | None = None
        self._progress = progress
        self._level = 0
        # The ctypes callback object must outlive every call llama.cpp makes through it.
        self._callback = llama_cpp.llama_log_callback(self._receive)

    def _receive(self, level: int, text: bytes | None, user_data: object) -> None:
        if level != _LOG_CONT:
            self._level = level
        message = (text or b"").decode("utf-8", errors="replace")
        if self._level == _LOG_ERROR and message.strip():
            if level == _LOG_CONT and self.errors:
                self.errors[-1] += message.rstrip()
            else:
                self.errors.append(message.strip())
        elif self._level == _LOG_WARN:
            fallback = _FALLBACK_SUMMARY.search(message)
            if fallback:
                self.fallback = fallback.group(1)
        elif self._progress is not None:
            match = _TENSOR_PROGRESS.match(message)
            if match:
                self._progress(int(match.group(1)), int(match.group(2)))

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = llama_cpp.llama_log_callback()
        previous_data = ctypes.c_void_p()
        llama_cpp.llama_log_get(ctypes.byref(previous), ctypes.byref(previous_data))
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(None))
        try:
            yield
        finally:
            llama_cpp.llama_log_set(previous, previous_data)


def read_gguf_file_type(path: Path) -> int | None:
    """The `general.file_type` value in a GGUF header (a `LLAMA_FTYPE_*`), or None when the
    header does not say or cannot be read."""
    try:
        with path.open("rb") as f:
            return _find_file_type(f)
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return None


# GGUF value types -> struct format, for the fixed-size ones.
_SCALARS = {
    0: "B",  # uint8
    1: "b",  # int8
    2: "H",  # uint16
    3: "h",  # int16
    4: "I",  # uint32
    5: "i",  # int32
    6: "f",  # float32
    7: "?",  # bool
    10: "Q",  # uint64
    11: "q",  # int64
    12: "d",  # float64
}
_STRING = 8
_ARRAY = 9
_MAX_STRING = 1 << 24


def _find_file_type(f: BinaryIO) -> int | None:
    def read(n: int) -> bytes:
        data = f.read(n)
        if len(data) != n:
            raise ValueError("truncated GGUF header")
        return data

    def unpack(fmt: str) -> int:
        value: int = struct.unpack("<" + fmt, read(struct.calcsize(fmt)))[0]
        return value

    def string() -> bytes:
        length = unpack("Q")
        if length > _MAX_STRING:
            raise ValueError("implausible GGUF string length")
        return read(length)

    def skip(value_type: int) -> None:
        if value_type in _SCALARS:
            f.seek(struct.calcsize(_SCALARS[value_type]), os.SEEK_CUR)
        elif value_type == _STRING:
            f.seek(unpack("Q"), os.SEEK_CUR)
        elif value_type == _ARRAY:
            item_type, count = unpack("I"), unpack("Q")
            if item_type in _SCALARS:
                f.seek(count * struct.calcsize(_SCALARS[item_type]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    skip(item_type)
        else:
            raise ValueError(f"unknown GGUF value type {value_type}")

    if read(4) != GGUF_MAGIC:
        return None
    if unpack("I") < 2:  # version 1 used 32-bit counts; llama.cpp no longer reads it
        return None
    unpack("Q")  # tensor count
    for _ in range(unpack("Q")):
        key = string()
        value_type = unpack("I")
        if key == b"general.file_type" and value_type in (4, 5):
            # Converters may set the "guessed" flag on top of the type.
            return unpack(_SCALARS[value_type]) & ~llama_cpp.LLAMA_FTYPE_GUESSED
        skip(value_type)
    return None
