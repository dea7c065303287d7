"""The command line: serve, check, mock-upstream, quantize, and the admin commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway import __version__
from modelway.hosts import is_loopback

if TYPE_CHECKING:
    from modelway.config import Config


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    result: int = args.run(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelway", description="An LLM gateway.")
    parser.add_argument("--version", action="version", version=f"modelway {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML config (default: the embedded model alone)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 4000)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow listening on a non-loopback address without authentication",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes on the port (more than 1 needs redis_url when state is shared)",
    )
    serve.set_defaults(run=_serve)

    check = sub.add_parser("check", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(run=_check)

    mock = sub.add_parser("mock-upstream", help="run a mock OpenAI/Anthropic upstream")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=4010)
    mock.add_argument("--latency-ms", type=float, default=0.0)
    mock.add_argument("--ttft-ms", type=float, default=0.0)
    mock.add_argument("--tokens-per-second", type=float, default=0.0)
    mock.add_argument("--fail-rate", type=float, default=0.0)
    mock.add_argument("--fail-status", type=int, default=500)
    mock.add_argument("--fail-mode", choices=["status", "reset", "cut", "hang"], default="status")
    mock.add_argument("--retry-after", type=float, default=1.0)
    mock.add_argument("--reply", choices=["echo", "lorem"], default="echo")
    mock.add_argument("--lorem-tokens", type=int, default=16)
    mock.add_argument("--seed", type=int)
    mock.set_defaults(run=_mock_upstream)

    quantize = sub.add_parser("quantize", help="re-quantize a GGUF model with llama.cpp")
    quantize.add_argument("input", help="the GGUF file to read")
    quantize.add_argument("output", help="the GGUF file to write")
    quantize.add_argument("--type", required=True, help="target type: q8_0, q5_k_m, q4_k_m, ...")
    quantize.add_argument("--threads", type=int, help="threads to use (default: all cores)")
    quantize.add_argument(
        "--allow-requantize",
        action="store_true",
        help="accept an already quantized input (quality suffers)",
    )
    quantize.set_defaults(run=_quantize)

    from modelway.cli_admin import add_commands
    from modelway.cli_ops import add_commands as add_ops_commands

    add_commands(sub)
    add_ops_commands(sub)
    return parser


def _quantize(args: argparse.Namespace) -> int:
    from modelway.engine.quantize import quantize_command

    return quantize_command(
        args.input,
        args.output,
        args.type,
        allow_requantize=args.allow_requantize,
        threads=args.threads,
    )


def _load(path: str) -> Config | None:
    """The config at ``path``, or None after listing its problems on stderr."""
    from modelway.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: invalid config", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    config = _load(args.file)
    if config is None:
        return 1
    print(f"{args.file}: ok, {config.summary()}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from modelway.config import default_config

    config = _load(args.config) if args.config else default_config()
    if config is None:
        return 1
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    if not is_loopback(host) and config.auth.master_key is None and not args.insecure_no_auth:
        print(
            f"refusing to listen on {host}: no authentication is configured, so anyone who "
            "can reach this address could use every model and key behind the gateway. "
            "Listen on 127.0.0.1, or pass --insecure-no-auth to accept that risk.",
            file=sys.stderr,
        )
        return 2
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    from modelway.api.reloader import ReloadRules

    rules = ReloadRules(
        require_auth=not is_loopback(host) and not args.insecure_no_auth, workers=args.workers
    )
    if args.workers > 1:
        from modelway.api.workers import run_workers

        return run_workers(config, host, port, args.config, rules)
    from modelway.api.serve import run

    return run(config, host, port, args.config, rules=rules)


def _mock_upstream(args: argparse.Namespace) -> int:
    from modelway.testing.mock_upstream import MockOptions, run_mock_upstream

    options = MockOptions(
        latency_ms=args.latency_ms,
        ttft_ms=args.ttft_ms,
        tokens_per_second=args.tokens_per_second,
        fail_rate=args.fail_rate,
        fail_status=args.fail_status,
        fail_mode=args.fail_mode,
        retry_after=args.retry_after,
        reply=args.reply,
        lorem_tokens=args.lorem_tokens,
        seed=args.seed,
    )
    run_mock_upstream(options, args.host, args.port)
    return 0
