"""The operator commands: `loadtest` (load a chat endpoint and report vLLM-style
figures) and `doctor` (pre-flight checks of a config and what it points at)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:
    load = sub.add_parser(
        "loadtest",
        help="load an OpenAI-compatible chat endpoint and report TTFT, TPOT, ITL, latency",
    )
    load.add_argument("url", type=_chat_url, help="base URL (http://host:4000) or full endpoint")
    load.add_argument("--model", required=True)
    mode = load.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rps", type=_positive(float), help="open loop: requests per second")
    mode.add_argument(
        "--concurrency", type=_positive(int), help="closed loop: workers sending back to back"
    )
    load.add_argument("--duration", type=_positive(float), required=True, help="seconds")
    load.add_argument(
        "--arrival",
        choices=["poisson", "uniform"],
        default="poisson",
        help="with --rps: inter-arrival times (default poisson)",
    )
    load.add_argument("--stream", action="store_true", help="stream the answers (for TTFT)")
    load.add_argument("--prompt-tokens", type=_positive(int), default=128, help="words")
    load.add_argument("--max-tokens", type=_positive(int), default=128)
    load.add_argument("--api-key", help="sent as a bearer token (never written to --json)")
    load.add_argument("--timeout", type=_positive(float), default=600.0, help="per request")
    load.add_argument("--seed", type=int, help="prompts and arrivals repeat with one seed")
    load.add_argument("--json", dest="json_file", help="write every figure and the arguments")
    load.add_argument(
        "--no-progress", action="store_true", help="no progress line (shown on a terminal only)"
    )
    load.set_defaults(run=_loadtest)

    doctor = sub.add_parser("doctor", help="pre-flight checks: config, upstreams, stores, clock")
    doctor.add_argument("--config", help="YAML config (default: the embedded model alone)")
    doctor.add_argument("--url", help="a running gateway to check (/health/ready, /metrics)")
    doctor.add_argument(
        "--timeout", type=_positive(float), default=10.0, help="seconds per check (default 10)"
    )
    doctor.set_defaults(run=_doctor)


def _chat_url(value: str) -> str:
    """The chat completions endpoint of a base URL, a /v1 URL or the endpoint itself."""
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError("must be an http:// or https:// URL")
    url = value.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return f"{url}/chat/completions" if url.endswith("/v1") else f"{url}/v1/chat/completions"


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {value}") from None
        if number <= 0:
            raise argparse.ArgumentTypeError("must be greater than 0")
        return number

    parse.__name__ = kind.__name__
    return parse


def _loadtest(args: argparse.Namespace) -> int:
    from modelway.loadtest import LoadSpec, run_load, summarize
    from modelway.loadtest.request import Target

    target = Target(
        url=args.url,
        model=args.model,
        stream=args.stream,
        max_tokens=args.max_tokens,
        api_key=args.api_key,
        timeout_seconds=args.timeout,
    )
    spec = LoadSpec(
        target=target,
        duration=args.duration,
        prompt_tokens=args.prompt_tokens,
        rps=args.rps,
        concurrency=args.concurrency,
        arrival=args.arrival,
        seed=args.seed,
    )
    started = datetime.now(UTC)
    run = asyncio.run(run_load(spec, None if args.no_progress else sys.stderr))
    summary = summarize(run.outcomes, run.elapsed)
    print(summary.table())
    if args.json_file:
        arguments = {
            "url": args.url,
            "model": args.model,
            "mode": "open" if args.rps is not None else "closed",
            "rps": args.rps,
            "arrival": args.arrival if args.rps is not None else None,
            "concurrency": args.concurrency,
            "duration": args.duration,
            "stream": args.stream,
            "prompt_tokens": args.prompt_tokens,
            "max_tokens": args.max_tokens,
            "temperature": 0.7,
            "timeout": args.timeout,
            "seed": args.seed,
            "api_key_set": args.api_key is not None,
        }
        record = {"started_at": started.isoformat(), "arguments": arguments, **summary.as_dict()}
        Path(args.json_file).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from modelway.doctor import run_doctor

    return run_doctor(args.config, args.url, args.timeout)
