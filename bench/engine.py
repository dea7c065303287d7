"""The embedded engine's throughput and latency: the bundled model served by `local`.

Starts a gateway whose only model is the bundled SmolLM2 on the `local` provider, waits
for /health/ready, and drives streamed chat completions at it over HTTP from this process
(an aiohttp client; closed loop: N workers, each sending its next request when the last
one ends). Every request has a ~128-token prompt (varied text, never twice the same) and
asks for exactly 128 tokens (`max_tokens` 128, `ignore_eos`, temperature 0.8, its own
seed). Per level (one at a time, then concurrency 1, 4, 8 and 16) it prints:

- aggregate generated tokens/s: completion tokens of the level / wall time of the level;
- time to first token p50/p99: from sending to the first chunk with non-empty content;
- time per output token p50/p99, as vLLM's benchmark defines TPOT: per request,
  (last content chunk - first content chunk) / (completion tokens - 1);
- mean prompt and completion tokens (from the usage chunk), so a reader sees that the
  answers ran to max_tokens;
- the gateway's CPU use (all its threads; 100% = one core) and resident memory (peak
  VmRSS sampled during the level).

Then the ratio concurrency 16 / one at a time, and the targets. `--soak N` instead sends
N short requests (16 tokens) at concurrency 16 and compares the gateway's resident memory
after the first 100 with the one at the end.

The gateway may use every core (the engine runs two threads); the client shares them.
Each level is repeated (--repeat), the levels interleaved, and the median is reported:
the machines this runs on are shared and noisy.

    .venv/bin/python bench/engine.py [--repeat 3] [--requests-per-level N]
        [--max-parallel 16] [--context-size 512] [--set batch_size=256] [--json out.json]
    .venv/bin/python bench/engine.py --soak 2000
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from processes import free_port, rss_mb, stop

MODEL = "smollm2"
PROMPT_TOKENS = 128
MAX_TOKENS = 128
SOAK_MAX_TOKENS = 16
SOAK_FIRST = 100
CONCURRENCY = (1, 4, 8, 16)
SEQUENTIAL = "one at a time"
# Deployment fields the benchmark writes besides provider and context_size; dropped (and
# reported) when the gateway under test does not know them yet.
OPTIONAL_FIELDS = ("max_parallel", "queue_size")

_WORD_TEXT = (
    "river mountain quiet lantern harbor orchard copper meadow signal winter garden thunder "
    "pocket velvet canyon marble whisper engine ladder compass silver forest candle bridge "
    "mirror island feather rocket blanket pepper violin tunnel crystal meadow saddle planet "
    "ribbon anchor basket cobalt dragon ember falcon glacier hollow ivory jasmine kettle "
    "lemon magnet nectar oyster pillow quartz raven sapphire timber umbrella valley walnut "
    "yellow zephyr apple baker cotton desert eagle fabric ginger hammer jungle kitten lizard "
    "mango needle olive parrot quiver rabbit salmon tomato uncle vapor window yogurt zebra "
    "morning evening library station kitchen theatre market village chapter letter number"
)
WORDS = _WORD_TEXT.split()

# --- the gateway ------------------------------------------------------------------------


def all_cores() -> set[int]:
    return set(os.sched_getaffinity(0))


def gateway_config(args: argparse.Namespace, drop: set[str]) -> str:
    fields: dict[str, Any] = {
        "provider": "local",
        "context_size": args.context_size,
        "max_parallel": args.max_parallel,
        "queue_size": args.queue_size,
    }
    for item in args.set:
        key, _, value = item.partition("=")
        fields[key.strip()] = orjson.loads(value) if _is_json(value) else value
    body = ", ".join(f"{k}: {orjson.dumps(v).decode()}" for k, v in fields.items() if k not in drop)
    return (
        "logging: {level: warning}\n"
        "models:\n"
        f"  - name: {MODEL}\n"
        "    deployments:\n"
        f"      - {{{body}}}\n"
    )


def _is_json(value: str) -> bool:
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return True


class GatewayFailed(RuntimeError):
    def __init__(self, log: str) -> None:
        super().__init__(f"the gateway did not become ready:\n{log}")
        self.log = log


def start_gateway(config: Path, port: int, log: Path, timeout: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelway", "serve", "--config", str(config), "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    os.sched_setaffinity(proc.pid, all_cores())
    url = f"http://127.0.0.1:{port}/health/ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GatewayFailed(log.read_text(errors="replace"))
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    stop(proc)
    raise GatewayFailed(log.read_text(errors="replace"))


def launch(
    args: argparse.Namespace, folder: Path, port: int
) -> tuple[subprocess.Popen[bytes], list[str]]:
    """The gateway, ready; and the optional config fields it rejected and ran without."""
    dropped: set[str] = set()
    while True:
        config = folder / "gateway.yaml"
        config.write_text(gateway_config(args, dropped))
        try:
            return start_gateway(config, port, folder / "gateway.log", args.start_timeout), sorted(
                dropped
            )
        except GatewayFailed as exc:
            unknown = set(re.findall(r"\.(\w+): unknown field", exc.log)) & set(OPTIONAL_FIELDS)
            if not unknown - dropped:
                raise
            dropped |= unknown


def cpu_seconds(pid: int) -> float:
    """User plus system time of all the process's threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- prompts and requests ---------------------------------------------------------------


def prompt_text(number: int, words: int) -> str:
    rng = random.Random(number)
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return f"Request {number}. Write a long story that uses these words: {text}."


def request_body(number: int, words: int, max_tokens: int) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": prompt_text(number, words)}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
            "temperature": 0.8,
            "seed": number,
            "ignore_eos": True,
        }
    )


@dataclass
class Result:
    ok: bool = False
    error: str = ""
    ttft: float | None = None
    tpot: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


async def one_request(session: aiohttp.ClientSession, url: str, body: bytes) -> Result:
    result = Result()
    t0 = time.perf_counter()
    first: float | None = None
    last: float | None = None
    try:
        async with session.post(
            url, data=body, headers={"content-type": "application/json"}
        ) as resp:
            if resp.status != 200:
                result.error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                return result
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].strip()
                if payload == b"[DONE]":
                    break
                chunk = orjson.loads(payload)
                if "error" in chunk:
                    result.error = str(chunk["error"])[:200]
                    return result
                for choice in chunk.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        last = time.perf_counter()
                        if first is None:
                            first = last
                usage = chunk.get("usage")
                if usage:
                    result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                    result.completion_tokens = int(usage.get("completion_tokens") or 0)
    except (TimeoutError, aiohttp.ClientError) as exc:
        result.error = f"{exc.__class__.__name__}: {exc}"
        return result
    if first is None or last is None:
        result.error = "no content"
        return result
    result.ok = True
    result.ttft = first - t0
    if result.completion_tokens > 1:
        result.tpot = (last - first) / (result.completion_tokens - 1)
    return result


@dataclass
class Level:
    name: str
    concurrency: int
    requests: int
    max_tokens: int = MAX_TOKENS
    results: list[Result] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    rss_peak: float = 0.0
    rss_marks: list[float] = field(default_factory=list)


def new_session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
    )


async def run_level(
    url: str, pid: int, level: Level, numbers: list[int], words: int, mark_after: int = 0
) -> Level:
    """Closed loop: `level.concurrency` workers take request numbers until none are left.

    With `mark_after`, the gateway's RSS is also recorded once that many requests ended.
    """
    pending = list(reversed(numbers))
    done = 0
    running = True

    async def sample() -> None:
        while running:
            level.rss_peak = max(level.rss_peak, rss_mb(pid))
            await asyncio.sleep(0.25)

    async with new_session(level.concurrency) as session:

        async def worker() -> None:
            nonlocal done
            while pending:
                number = pending.pop()
                body = request_body(number, words, level.max_tokens)
                level.results.append(await one_request(session, url, body))
                done += 1
                if mark_after and done == mark_after:
                    level.rss_marks.append(rss_mb(pid))

        sampler = asyncio.create_task(sample())
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(level.concurrency)))
        level.wall = time.perf_counter() - t0
        level.cpu = cpu_seconds(pid) - cpu0
        running = False
        await sampler
    level.rss_peak = max(level.rss_peak, rss_mb(pid))
    level.rss_marks.append(rss_mb(pid))
    return level


async def calibrate(url: str) -> tuple[int, float]:
    """Words per prompt for ~PROMPT_TOKENS prompt tokens; (words, measured tokens).

    Two short probes (which also warm the model up) give tokens as a linear function of
    the word count, chat template included.
    """
    probes: list[tuple[int, int]] = []
    async with new_session(1) as session:
        for i, words in enumerate((20, 100)):
            result = await one_request(session, url, request_body(1_000_000 + i, words, 4))
            if not result.ok or not result.prompt_tokens:
                raise RuntimeError(f"calibration request failed: {result.error or 'no usage'}")
            probes.append((words, result.prompt_tokens))
    (w1, t1), (w2, t2) = probes
    slope = (t2 - t1) / (w2 - w1)
    words = max(1, round(w1 + (PROMPT_TOKENS - t1) / slope)) if slope > 0 else w2
    return words, t1 + slope * (words - w1)


# --- statistics -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def level_stats(level: Level) -> dict[str, float]:
    ok = [r for r in level.results if r.ok]
    ttft = [r.ttft * 1000 for r in ok if r.ttft is not None]
    tpot = [r.tpot * 1000 for r in ok if r.tpot is not None]
    completion = sum(r.completion_tokens for r in ok)
    return {
        "requests": len(level.results),
        "errors": len(level.results) - len(ok),
        "wall_s": level.wall,
        "tok_s": completion / level.wall if level.wall else 0.0,
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p99_ms": percentile(ttft, 99),
        "tpot_p50_ms": percentile(tpot, 50),
        "tpot_p99_ms": percentile(tpot, 99),
        "mean_prompt_tokens": statistics.fmean(r.prompt_tokens for r in ok) if ok else 0.0,
        "mean_completion_tokens": statistics.fmean(r.completion_tokens for r in ok) if ok else 0.0,
        "gateway_cpu_pct": 100 * level.cpu / level.wall if level.wall else 0.0,
        "gateway_rss_mb": level.rss_peak,
    }


def first_errors(levels: list[Level]) -> list[str]:
    seen: list[str] = []
    for level in levels:
        for r in level.results:
            if not r.ok and r.error not in seen:
                seen.append(r.error)
    return seen[:5]


# --- the runs ---------------------------------------------------------------------------


def level_plan(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(name, concurrency, requests) per level."""

    def count(c: int) -> int:
        return args.requests_per_level or max(8, 2 * c)

    plan = [(SEQUENTIAL, 1, count(max(CONCURRENCY)))]
    plan += [(f"concurrency {c}", c, count(c)) for c in CONCURRENCY]
    for name, conc, requests in plan:
        if requests < conc:
            print(
                f"note: {name} gets {requests} requests, so at most {requests} run at once",
                file=sys.stderr,
            )
    return plan


async def throughput(args: argparse.Namespace, url: str, pid: int) -> dict[str, Any]:
    words, expected = await calibrate(url)
    runs: dict[str, list[dict[str, float]]] = {}
    levels: list[Level] = []
    number = 0
    plan = level_plan(args)
    for _ in range(args.repeat):
        for name, conc, requests in plan:
            numbers = list(range(number, number + requests))
            number += requests
            level = await run_level(url, pid, Level(name, conc, requests), numbers, words)
            levels.append(level)
            stats = level_stats(level)
            runs.setdefault(name, []).append(stats)
            print(
                f"  {name:16s} {stats['tok_s']:7.1f} tok/s  ttft p50 {stats['ttft_p50_ms']:7.1f} ms"
                f"  tpot p50 {stats['tpot_p50_ms']:6.2f} ms  errors {stats['errors']:.0f}",
                file=sys.stderr,
                flush=True,
            )
    summary = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    c16 = summary[f"concurrency {max(CONCURRENCY)}"]["tok_s"]
    seq = summary[SEQUENTIAL]["tok_s"]
    return {
        "prompt_words": words,
        "expected_prompt_tokens": expected,
        "levels": summary,
        "ratio_c16_over_sequential": c16 / seq if seq else float("nan"),
        "first_errors": first_errors(levels),
        "runs": runs,
    }


async def soak(args: argparse.Namespace, url: str, pid: int) -> dict[str, Any]:
    words, expected = await calibrate(url)
    level = Level("soak", max(CONCURRENCY), args.soak, max_tokens=SOAK_MAX_TOKENS)
    await run_level(url, pid, level, list(range(args.soak)), words, mark_after=SOAK_FIRST)
    stats = level_stats(level)
    # The mark after SOAK_FIRST requests is missing when the soak is shorter than that.
    after_first = level.rss_marks[0] if len(level.rss_marks) > 1 else float("nan")
    at_end = level.rss_marks[-1]
    return {
        "prompt_words": words,
        "expected_prompt_tokens": expected,
        "soak": stats,
        "rss_mb_after_first": after_first,
        "rss_mb_at_end": at_end,
        "rss_growth_pct": 100 * (at_end - after_first) / after_first,
        "first_errors": first_errors([level]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--requests-per-level",
        type=int,
        default=0,
        help="requests per level (default: max(8, 2 * concurrency); one at a time: as c16)",
    )
    parser.add_argument("--max-parallel", type=int, default=16)
    parser.add_argument("--context-size", type=int, default=512)
    parser.add_argument("--queue-size", type=int, default=256)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="another field of the local deployment, e.g. batch_size=256 or flash_attention=false",
    )
    parser.add_argument("--soak", type=int, default=0, metavar="N", help="run the soak test only")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="modelway-bench-engine-"))
    port = free_port()
    gateway, dropped = launch(args, folder, port)
    if dropped:
        print(
            f"note: the gateway rejected {', '.join(dropped)}; running without",
            file=sys.stderr,
        )
    try:
        memory = rss_mb(gateway.pid)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        run = soak if args.soak else throughput
        result = asyncio.run(run(args, url, gateway.pid))
    finally:
        stop(gateway)
    result["gateway_rss_mb_ready"] = memory
    result["config"] = (folder / "gateway.yaml").read_text()
    result["dropped_config_fields"] = dropped
    result["cpus"] = sorted(all_cores())
    if args.soak:
        report_soak(result, args)
    else:
        report(result, args)
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


# --- the report -------------------------------------------------------------------------


def header(r: dict[str, Any], args: argparse.Namespace, what: str) -> None:
    print(
        f"# modelway embedded engine {what}  ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} "
        f"cores, gateway and client on cpu {r['cpus']}, max_parallel {args.max_parallel}, "
        f"context_size {args.context_size}"
        + (f", {', '.join(args.set)}" if args.set else "")
        + (
            f", without {', '.join(r['dropped_config_fields'])}"
            if r["dropped_config_fields"]
            else ""
        )
        + f"; prompt {r['prompt_words']} words, ~{r['expected_prompt_tokens']:.0f} tokens)"
    )


def _mark(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    header(r, args, f"throughput, median of {args.repeat} run(s)")
    print(
        f"gateway resident memory when ready: {r['gateway_rss_mb_ready']:.0f} MB; "
        f"each request asks for {MAX_TOKENS} tokens with ignore_eos\n"
    )
    cols = (
        ("level", 16),
        ("requests", 8),
        ("tok/s", 7),
        ("TTFT p50", 10),
        ("TTFT p99", 10),
        ("TPOT p50", 9),
        ("TPOT p99", 9),
        ("prompt tok", 10),
        ("compl. tok", 10),
        ("gw CPU", 6),
        ("gw RSS", 7),
        ("errors", 6),
    )
    print("| " + " | ".join(f"{n:{w}s}" for n, w in cols) + " |")
    print("|" + "|".join("-" * (w + 2) for _, w in cols) + "|")
    for name, s in r["levels"].items():
        cells = (
            name,
            f"{s['requests']:.0f}",
            f"{s['tok_s']:.1f}",
            f"{s['ttft_p50_ms']:.0f} ms",
            f"{s['ttft_p99_ms']:.0f} ms",
            f"{s['tpot_p50_ms']:.2f} ms",
            f"{s['tpot_p99_ms']:.2f} ms",
            f"{s['mean_prompt_tokens']:.1f}",
            f"{s['mean_completion_tokens']:.1f}",
            f"{s['gateway_cpu_pct']:.0f}%",
            f"{s['gateway_rss_mb']:.0f} MB",
            f"{s['errors']:.0f}",
        )
        print("| " + " | ".join(f"{c:{w}s}" for c, (_, w) in zip(cells, cols, strict=True)) + " |")

    levels = r["levels"]
    c16 = levels[f"concurrency {max(CONCURRENCY)}"]["tok_s"]
    c1 = levels["concurrency 1"]["tok_s"]
    ratio = r["ratio_c16_over_sequential"]
    rows = (
        ("aggregate, concurrency 16", f"{c16:.1f} tok/s", ">= 300 tok/s", c16 >= 300),
        ("single stream, concurrency 1", f"{c1:.1f} tok/s", ">= 140 tok/s", c1 >= 140),
        ("concurrency 16 / one at a time", f"{ratio:.2f}x", ">= 1.9x", ratio >= 1.9),
    )
    print()
    print(f"| {'measure':32s} | {'result':14s} | {'target':13s} | {'met':3s} |")
    print(f"|{'-' * 34}|{'-' * 16}|{'-' * 15}|{'-' * 5}|")
    for name, value, target, ok in rows:
        print(f"| {name:32s} | {value:14s} | {target:13s} | {_mark(ok):3s} |")
    _report_errors(r)


def report_soak(r: dict[str, Any], args: argparse.Namespace) -> None:
    header(r, args, "soak")
    s = r["soak"]
    growth = r["rss_growth_pct"]
    rows = (
        (
            "requests at concurrency 16",
            f"{s['requests']:.0f} ({s['errors']:.0f} failed)",
            "",
            "",
        ),
        ("mean completion tokens", f"{s['mean_completion_tokens']:.1f}", f"{SOAK_MAX_TOKENS}", ""),
        ("aggregate", f"{s['tok_s']:.1f} tok/s", "", ""),
        (f"resident memory after {SOAK_FIRST}", f"{r['rss_mb_after_first']:.1f} MB", "", ""),
        ("resident memory at the end", f"{r['rss_mb_at_end']:.1f} MB", "", ""),
        ("growth", f"{growth:+.2f}%", "< 5%", _mark(growth < 5)),
    )
    print(f"| {'measure':32s} | {'result':20s} | {'target':6s} | {'met':3s} |")
    print(f"|{'-' * 34}|{'-' * 22}|{'-' * 8}|{'-' * 5}|")
    for name, value, target, ok in rows:
        print(f"| {name:32s} | {value:20s} | {target:6s} | {ok:3s} |")
    _report_errors(r)


def _report_errors(r: dict[str, Any]) -> None:
    if r["first_errors"]:
        print("\nfirst errors:")
        for error in r["first_errors"]:
            print(f"- {error}")


if __name__ == "__main__":
    raise SystemExit(main())
