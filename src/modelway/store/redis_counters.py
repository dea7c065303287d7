"""Counters shared by all replicas in Redis: one Lua script, one round trip, per call.

Layout under the prefix: a window is a hash of one-second buckets (field = the second,
value = units) plus `t` (their total), `o` (the lowest bucket that may still hold units)
and `n` (the newest bucket with units), so an admission costs time proportional to the
seconds elapsed since the last one, not to the size of the window. A slot set is a
sorted set of leases scored by expiry; a budget is an integer string. The scripts are
redis_admit.lua and redis_settle.lua beside this file.

Times come from the caller (`now`, `taken_at`; replicas are NTP-synced); only key
expiry (housekeeping, and the end of a budget's period) runs on the Redis clock. One
call's keys go to one Redis server: this is not a Redis Cluster client.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

from modelway.store.counters import (
    SLOTS_RETRY_AFTER,
    Admission,
    Budget,
    Slots,
    Window,
    WindowState,
    window_reset,
)
from modelway.store.redis_wire import Arg, RedisWire, pack

# Window hashes outlive their newest bucket by this much, so a replica whose clock runs
# a little behind Redis's never finds a live window gone.
_WINDOW_MARGIN_SECONDS = 30
_SLOTS_MARGIN_SECONDS = 60
# Packed admission heads kept (one per caller and budget period in use).
_MAX_HEADS = 10_000


@dataclass(frozen=True, slots=True)
class _Script:
    sha: bytes
    load_command: bytes  # SCRIPT LOAD of its source

    @classmethod
    def load(cls, name: str) -> _Script:
        source = resources.files(__package__).joinpath(name).read_bytes()
        return cls(hashlib.sha1(source).hexdigest().encode(), pack(b"SCRIPT", b"LOAD", source))


def _evalsha_command(script: _Script, keys: list[str], args: list[Arg]) -> bytes:
    return pack(b"EVALSHA", script.sha, len(keys), *keys, *args)


class RedisCounters:
    """`Counters` in Redis at `url`, every key under `prefix`.

    Calls share one pipelined connection (redis_wire.py); a call that Redis does not
    answer within `socket_timeout` seconds raises `CountersUnavailable`.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "modelway:",
        lease_ttl: float = 3600.0,
        socket_timeout: float = 0.5,
    ) -> None:
        self.prefix = prefix
        self.lease_ttl = lease_ttl
        self._admit = _Script.load("redis_admit.lua")
        self._settle = _Script.load("redis_settle.lua")
        # Loaded on every new connection: after a Redis restart both are there again.
        setup = [self._admit.load_command, self._settle.load_command]
        self._wire = RedisWire(url, timeout=socket_timeout, setup=setup)
        self._slots_ttl_ms = int((lease_ttl + _SLOTS_MARGIN_SECONDS) * 1000)
        self._heads: dict[tuple[tuple[str | int, ...], ...], tuple[bytes, int]] = {}

    async def admit(
        self,
        windows: Sequence[Window],
        slots: Sequence[Slots],
        budgets: Sequence[Budget],
        *,
        lease: str,
        now: float,
    ) -> Admission:
        if not (windows or slots or budgets):
            return Admission(True, None, 0.0, (), ())
        head, count = self._admit_head(windows, slots, budgets)
        changing: list[Arg] = [repr(now), math.floor(now), lease, repr(now + self.lease_ttl)]
        changing += [w.amount for w in windows]
        for b in budgets:
            changing += (b.amount, b.ttl_seconds)
        tail = pack(*changing)
        command = b"*%d\r\n%s%s" % (count + len(changing), head, tail[tail.index(b"\n") + 1 :])
        reply: list[int] = await self._wire.call(command, reload=self._admit.load_command)
        return _admission(reply, windows, slots, budgets, now)

    def _admit_head(
        self, windows: Sequence[Window], slots: Sequence[Slots], budgets: Sequence[Budget]
    ) -> tuple[bytes, int]:
        """The packed part of an admission that stays the same between one caller's
        requests (without the command's own header), and how many arguments it holds."""
        shape = (
            *[(w.key, w.limit, w.window_seconds) for w in windows],
            *[(s.key, s.limit) for s in slots],
            *[(b.key, b.limit) for b in budgets],
        )
        found = self._heads.get(shape)
        if found is not None:
            return found
        p = self.prefix
        keys = [p + w.key for w in windows] + [p + s.key for s in slots]
        keys += [p + b.key for b in budgets]
        args: list[Arg] = [len(windows), len(slots), len(budgets), self._slots_ttl_ms]
        for w in windows:
            args += (w.limit, w.window_seconds, w.window_seconds + _WINDOW_MARGIN_SECONDS)
        args += [s.limit for s in slots]
        args += [b.limit for b in budgets]
        packed = _evalsha_command(self._admit, keys, args)
        if len(self._heads) >= _MAX_HEADS:  # budgets' keys change with their period
            self._heads.clear()
        found = self._heads[shape] = (packed[packed.index(b"\n") + 1 :], 3 + len(keys) + len(args))
        return found

    async def extend(
        self, budgets: Sequence[Budget], windows: Sequence[Window], *, now: float
    ) -> Admission:
        return await self.admit(windows, (), budgets, lease="", now=now)

    async def settle(
        self,
        windows: Sequence[tuple[Window, int]],
        budgets: Sequence[tuple[Budget, int]],
        slots: Sequence[Slots],
        *,
        lease: str,
        taken_at: float,
    ) -> None:
        command = self._settle_command(windows, budgets, slots, lease, taken_at)
        if command is not None:
            await self._wire.call(command, reload=self._settle.load_command)

    def settle_soon(
        self,
        windows: Sequence[tuple[Window, int]],
        budgets: Sequence[tuple[Budget, int]],
        slots: Sequence[Slots],
        *,
        lease: str,
        taken_at: float,
        failed: Callable[[BaseException], None],
    ) -> None:
        command = self._settle_command(windows, budgets, slots, lease, taken_at)
        if command is not None:
            self._wire.send_soon(command, failed, reload=self._settle.load_command)

    def _settle_command(
        self,
        windows: Sequence[tuple[Window, int]],
        budgets: Sequence[tuple[Budget, int]],
        slots: Sequence[Slots],
        lease: str,
        taken_at: float,
    ) -> bytes | None:
        windows = [(w, delta) for w, delta in windows if delta]
        budgets = [(b, delta) for b, delta in budgets if delta]
        if not (windows or budgets or slots):
            return None
        p = self.prefix
        keys = [p + w.key for w, _ in windows] + [p + b.key for b, _ in budgets]
        keys += [p + s.key for s in slots]
        args: list[Arg] = [len(windows), len(budgets), len(slots), lease, math.floor(taken_at)]
        for w, delta in windows:
            args += (delta, w.window_seconds + _WINDOW_MARGIN_SECONDS)
        for b, delta in budgets:
            args += (delta, b.ttl_seconds)
        return _evalsha_command(self._settle, keys, args)

    async def seed_budget(self, key: str, spent: int, ttl_seconds: int) -> None:
        await self._wire.call(pack(b"SET", self.prefix + key, spent, b"EX", ttl_seconds, b"NX"))

    async def budget_spent(self, key: str) -> int | None:
        value = await self._wire.call(pack(b"GET", self.prefix + key))
        return None if value is None else int(value)

    async def close(self) -> None:
        await self._wire.close()


def _admission(
    reply: list[int],
    windows: Sequence[Window],
    slots: Sequence[Slots],
    budgets: Sequence[Budget],
    now: float,
) -> Admission:
    allowed, denied, datum = reply[0], reply[1], reply[2]
    states = tuple(
        WindowState(
            w.limit,
            max(0, w.limit - reply[3 + 2 * i]),
            window_reset(reply[3 + 2 * i], reply[4 + 2 * i], w.window_seconds, now),
        )
        for i, w in enumerate(windows)
    )
    spent = tuple(reply[3 + 2 * len(windows) :])
    if allowed:
        return Admission(True, None, 0.0, states, spent)
    index = denied - 1
    if index < len(windows):
        window = windows[index]
        denied_key = window.key
        seconds = window.window_seconds
        retry = float(seconds) if datum < 0 else datum + seconds - now
    elif index < len(windows) + len(slots):
        denied_key, retry = slots[index - len(windows)].key, SLOTS_RETRY_AFTER
    else:
        budget = budgets[index - len(windows) - len(slots)]
        denied_key = budget.key
        retry = datum / 1000 if datum >= 0 else float(budget.ttl_seconds)
    return Admission(False, denied_key, retry, states, spent)
