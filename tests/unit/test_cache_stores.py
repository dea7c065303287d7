"""The in-memory answer store (LRU by bytes, TTL) and the vector index."""

from __future__ import annotations

import numpy as np

from modelway.cache.stores import MemoryStore
from modelway.cache.vector_index import VectorIndex


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    store = MemoryStore(10_000, clock)
    await store.set("a", b"answer", 10)
    assert await store.get("a") == b"answer"
    clock.now += 10
    assert await store.get("a") is None
    assert store.bytes == 0


async def test_the_least_recently_used_go_first_when_bytes_run_out() -> None:
    store = MemoryStore(300)
    for name in "abc":
        await store.set(name, name.encode() * 100, 60)
    assert await store.get("a") is not None  # a is now the most recently used
    await store.set("d", b"d" * 100, 60)
    assert await store.get("b") is None
    assert {k for k in "acd" if await store.get(k) is not None} == set("acd")
    assert store.bytes == 300
    await store.set("huge", b"x" * 301, 60)  # larger than the whole store: not kept
    assert await store.get("huge") is None and len(store) == 3


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_search_finds_the_closest_in_its_own_partition() -> None:
    index = VectorIndex(3, 100)
    index.add("p1", "east", "q", unit(1, 0, 0), expires=2e9)
    index.add("p1", "north", "q", unit(0, 1, 0), expires=2e9)
    index.add("p2", "north-other-tenant", "q", unit(0, 1, 0.01), expires=2e9)
    match = index.search("p1", unit(0.1, 1, 0))
    assert match is not None and match.key == "north" and 0.99 < match.similarity <= 1.0
    assert index.search("p3", unit(0, 1, 0)) is None


def test_expired_vectors_are_not_found() -> None:
    clock = Clock()
    index = VectorIndex(3, 100, clock)
    index.add("p", "old", "q", unit(1, 0, 0), expires=clock.now + 5)
    index.add("p", "new", "q", unit(0, 1, 0), expires=clock.now + 50)
    clock.now += 10
    match = index.search("p", unit(1, 0, 0))
    assert match is not None and match.key == "new"


def test_the_oldest_go_first_when_the_index_is_full() -> None:
    index = VectorIndex(2, 3)
    for i in range(5):
        index.add("p", f"k{i}", "q", unit(1, i), expires=2e9)
    assert len(index) == 3
    index.add("p", "k2", "q", unit(1, 2), expires=2e9)  # replaced, not added
    assert len(index) == 3
    keys = set()
    for i in range(5):
        match = index.search("p", unit(1, i))
        assert match is not None
        keys.add(match.key)
    assert keys == {"k2", "k3", "k4"}


def test_removing_keeps_the_rest_searchable() -> None:
    index = VectorIndex(2, 10)
    for i in range(4):
        index.add("p", f"k{i}", "q", unit(1, i * 3), expires=2e9)
    index.remove("p", "k1")
    for i in (0, 2, 3):
        match = index.search("p", unit(1, i * 3))
        assert match is not None and match.key == f"k{i}"
    for i in (0, 2, 3):
        index.remove("p", f"k{i}")
    assert len(index) == 0 and index.search("p", unit(1, 0)) is None


def test_a_candidate_the_check_refuses_gives_way_to_the_next_one() -> None:
    index = VectorIndex(2, 10)
    index.add("p", "closest", "capital of Germany", unit(1, 0), expires=2e9)
    index.add("p", "next", "capital of France", unit(1, 0.1), expires=2e9)
    match = index.search("p", unit(1, 0), 0.9, lambda text: "France" in text)
    assert match is not None and match.key == "next"
    assert index.search("p", unit(1, 0), 0.9, lambda text: False) is None
    assert index.search("p", unit(0, 1), 0.9) is None  # nothing close enough


def test_the_index_takes_the_size_of_the_first_vector_and_ignores_others() -> None:
    index = VectorIndex(None, 10)
    index.add("p", "a", "q", unit(1, 0, 0, 0), expires=2e9)
    assert index.dims == 4
    index.add("p", "b", "q", unit(1, 0), expires=2e9)  # another model's size: not kept
    assert len(index) == 1
    assert index.search("p", unit(1, 0)) is None
    match = index.search("p", unit(1, 0, 0, 0))
    assert match is not None and match.key == "a"
