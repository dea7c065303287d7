"""Time-bucketed traffic aggregates for the alert rules: O(1) to record on the request
path, summed over a recent window and its baseline when the rules are evaluated.

Per model group, one bucket per ``BUCKET_SECONDS`` that saw traffic, holding counts and
two fixed-bin latency histograms (end to end, time to first token); per team, one cost
bucket per ``COST_BUCKET_SECONDS``. Buckets older than the longest window are dropped.
Each series keeps a running sum of its buckets, so a baseline (an hour, a day) is that
sum minus the recent window: evaluation walks the recent window only, not the hour.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from operator import add, sub

BUCKET_SECONDS = 10.0
COST_BUCKET_SECONDS = 60.0
# Model names come from the config, teams from keys; the caps only guard against a bug.
MAX_MODELS = 1000
MAX_TEAMS = 10000
NO_TEAM = "(none)"

# Bin edges grow by 25 % from 5 ms to about 10 minutes: an estimated percentile is
# within one bin, i.e. 25 %, of the true one, plenty to spot a doubling.
LATENCY_EDGES: tuple[float, ...] = tuple(0.005 * 1.25**i for i in range(53))
_BINS = len(LATENCY_EDGES) + 1


def slot_of(now: float, width: float = BUCKET_SECONDS) -> int:
    return int(now // width)


def slots_in(seconds: float, width: float = BUCKET_SECONDS) -> int:
    return max(1, round(seconds / width))


class Counts:
    """Requests, errors and latency histograms of a bucket, or a sum of buckets.
    A sum made without histograms has empty ones (``map`` stops at the shorter list)."""

    __slots__ = ("count", "errors", "latency", "slot", "ttft")

    def __init__(self, slot: int, histograms: bool = True) -> None:
        self.slot = slot
        self.count = 0
        self.errors = 0
        self.latency = [0] * _BINS if histograms else []
        self.ttft = [0] * _BINS if histograms else []

    def merge(self, other: Counts, op: Callable[[int, int], int] = add) -> None:
        self.count = op(self.count, other.count)
        self.errors = op(self.errors, other.errors)
        if self.latency:
            self.latency = list(map(op, self.latency, other.latency))
            self.ttft = list(map(op, self.ttft, other.ttft))


class RequestSeries:
    __slots__ = ("buckets", "older")

    def __init__(self) -> None:
        self.buckets: deque[Counts] = deque()
        self.older = Counts(0)  # the sum of every bucket but the newest

    def split(self, first: int, start: int, histograms: bool) -> tuple[Counts, Counts]:
        """Sums of the buckets from slot ``first`` on (the recent window), and of those
        from ``start`` to before ``first`` (its baseline)."""
        recent, base = Counts(first, histograms), Counts(start, histograms)
        if not self.buckets:
            return recent, base
        for bucket in reversed(self.buckets):
            if bucket.slot < first:
                break
            recent.merge(bucket)
        base.merge(self.older)
        base.merge(self.buckets[-1])
        base.merge(recent, sub)
        for bucket in self.buckets:
            if bucket.slot >= start:
                break
            base.merge(bucket, sub)
        return recent, base

    def drop_before(self, oldest: int) -> None:
        buckets = self.buckets
        while len(buckets) > 1 and buckets[0].slot < oldest:
            self.older.merge(buckets.popleft(), sub)
        if buckets and buckets[0].slot < oldest:
            buckets.clear()


class CostSeries:
    __slots__ = ("buckets", "first_seen", "total")

    def __init__(self, slot: int) -> None:
        self.buckets: deque[list[float]] = deque()  # [slot, usd]
        self.total = 0.0
        self.first_seen = slot  # the baseline cannot reach back before this

    def split(self, first: int, start: int) -> tuple[float, float]:
        """USD spent from slot ``first`` on, and from ``start`` to before ``first``."""
        recent = 0.0
        for slot, usd in reversed(self.buckets):
            if slot < first:
                break
            recent += usd
        base = self.total - recent
        for slot, usd in self.buckets:
            if slot >= start:
                break
            base -= usd
        return recent, max(0.0, base)  # max: float rounding of the running total

    def drop_before(self, oldest: int) -> None:
        while self.buckets and self.buckets[0][0] < oldest:
            self.total -= self.buckets.popleft()[1]


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a latency histogram, interpolated within its bin."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(histogram):
        if n and seen + n >= rank:
            low = LATENCY_EDGES[i - 1] if i > 0 else 0.0
            high = LATENCY_EDGES[min(i, len(LATENCY_EDGES) - 1)]
            return low + (high - low) * (rank - seen) / n
        seen += n
    return LATENCY_EDGES[-1]


class Traffic:
    """The per-model request series and the per-team cost series."""

    def __init__(self, keep_seconds: float, keep_cost_seconds: float) -> None:
        self._keep = slots_in(keep_seconds) + 1
        self._keep_cost = slots_in(keep_cost_seconds, COST_BUCKET_SECONDS) + 1
        self.models: dict[str, RequestSeries] = {}
        self.teams: dict[str, CostSeries] = {}

    def record(
        self,
        now: float,
        model: str,
        ok: bool,
        latency_s: float,
        ttft_s: float | None,
        team: str | None,
        cost_usd: float,
    ) -> None:
        slot = int(now // BUCKET_SECONDS)
        series = self.models.get(model)
        if series is None:
            if len(self.models) >= MAX_MODELS:
                return
            series = self.models[model] = RequestSeries()
        buckets = series.buckets
        # A clock that steps back adds to the newest bucket rather than reorder them.
        if buckets and buckets[-1].slot >= slot:
            bucket = buckets[-1]
        else:
            if buckets:
                series.older.merge(buckets[-1])
            bucket = Counts(slot)
            buckets.append(bucket)
            series.drop_before(slot - self._keep + 1)
        bucket.count += 1
        if ok:
            bucket.latency[bisect_right(LATENCY_EDGES, latency_s)] += 1
            if ttft_s is not None:
                bucket.ttft[bisect_right(LATENCY_EDGES, ttft_s)] += 1
        else:
            bucket.errors += 1
        if cost_usd > 0:
            self._record_cost(now, team or NO_TEAM, cost_usd)

    def _record_cost(self, now: float, team: str, usd: float) -> None:
        slot = int(now // COST_BUCKET_SECONDS)
        series = self.teams.get(team)
        if series is None:
            if len(self.teams) >= MAX_TEAMS:
                return
            series = self.teams[team] = CostSeries(slot)
        series.total += usd
        buckets = series.buckets
        if buckets and buckets[-1][0] >= slot:
            buckets[-1][1] += usd
        else:
            buckets.append([float(slot), usd])
            series.drop_before(slot - self._keep_cost + 1)

    def prune(self, now: float) -> None:
        """Drops expired buckets, and the series left empty."""
        oldest = slot_of(now) - self._keep + 1
        for model, series in list(self.models.items()):
            series.drop_before(oldest)
            if not series.buckets:
                del self.models[model]
        oldest_cost = slot_of(now, COST_BUCKET_SECONDS) - self._keep_cost + 1
        for team, costs in list(self.teams.items()):
            costs.drop_before(oldest_cost)
            if not costs.buckets:
                del self.teams[team]
