"""Where requests wait when every usable deployment of their group is at its limit.

Highest priority first; within a priority, weighted fair sharing between tenants (start
time fair queueing): each tenant's requests get virtual finish tags spaced by
1 / weight, so a tenant with a hundred requests queued and one with a single request
alternate instead of the second waiting behind all hundred. Bounded in size and in
time. A waiter is woken when a request of the group ends (or a quota window frees up)
and checks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable

from modelway.protocol.errors import RateLimited


class AdmissionQueue:
    def __init__(self, group: str, *, size: int, timeout_seconds: float) -> None:
        self.group = group
        self.size = size
        self.timeout_seconds = timeout_seconds
        self._waiting: list[tuple[int, float, int, asyncio.Event]] = []
        self._order = itertools.count()
        self._virtual_time = 0.0  # the finish tag of the last request let through
        self._tenant_finish: dict[str, float] = {}

    @property
    def depth(self) -> int:
        return len(self._waiting)

    async def wait_for_room(
        self,
        has_room: Callable[[], bool],
        *,
        priority: int,
        recheck_after: Callable[[], float | None],
        deadline_seconds: float | None,
        tenant: str = "",
        weight: float = 1.0,
    ) -> None:
        if len(self._waiting) >= self.size:
            raise RateLimited(
                f"model group '{self.group}': every deployment is at its limit and "
                f"{len(self._waiting)} requests are already waiting",
                retry_after=1,
            )
        limit = self.timeout_seconds
        if deadline_seconds is not None:
            limit = min(limit, deadline_seconds)
        start = max(self._virtual_time, self._tenant_finish.get(tenant, 0.0))
        finish = start + 1.0 / weight
        self._tenant_finish[tenant] = finish
        entry = (-priority, finish, next(self._order), asyncio.Event())
        heapq.heappush(self._waiting, entry)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + limit
        try:
            while True:
                if self._waiting[0] is entry and has_room():
                    self._served(finish)
                    return
                remaining = give_up - loop.time()
                if remaining <= 0:
                    raise RateLimited(
                        f"model group '{self.group}': no deployment had room within {limit:g} s",
                        retry_after=max(1.0, recheck_after() or 1.0),
                    )
                entry[3].clear()
                pause = min(remaining, recheck_after() or remaining)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(entry[3].wait(), timeout=max(pause, 0.001))
        finally:
            self._waiting.remove(entry)
            heapq.heapify(self._waiting)
            self.notify()  # the next waiter may have room too

    def notify(self) -> None:
        """Room may have appeared: the head of the queue checks again."""
        if self._waiting:
            self._waiting[0][3].set()

    def _served(self, finish: float) -> None:
        self._virtual_time = max(self._virtual_time, finish)
        if len(self._tenant_finish) > 1024:  # forget tenants with nothing in flight
            now = self._virtual_time
            self._tenant_finish = {t: f for t, f in self._tenant_finish.items() if f > now}
