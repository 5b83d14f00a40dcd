"""Checks of a run's command line that need no model and no data: each problem is a UsageError
(one line, exit status 2), found in well under two seconds, before any heavy import."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import benchmarks
from ..errors import UsageError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line (UsageError), not the usage block first."""

    def error(self, message):
        raise UsageError(f"{message} ({self.prog} --help lists the options)")


def check_args(args) -> None:
    if getattr(args, "shard", None) is not None:
        from ..data.shards import parse

        try:
            parse(args.shard)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if getattr(args, "judge_base_url", None) or getattr(args, "judge_model", None):
            raise UsageError("--shard with a judge: `pr-eval merge` takes shards run without one; judge the merged "
                             "run with `pr-eval rescore MERGED --judge-base-url URL --judge-model NAME`")
    if args.data in ("hub", "samples") and args.data_dir:
        raise UsageError(f"--data {args.data} and --data-dir exclude each other "
                         "(--data-dir goes with --data official, or alone)")
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise UsageError(f"--data-dir {args.data_dir}: no such folder")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be a positive number of samples")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.mm_cache_gb is not None and (args.mm_cache_gb < 0 or args.engine != "vllm"):
        raise UsageError("--mm-cache-gb goes with --engine vllm and must be 0 or more")
    if args.engine == "openai" and not args.base_url:
        raise UsageError("--engine openai needs --base-url (the server's API root, e.g. http://127.0.0.1:8000/v1)")
    for url in args.base_url or []:
        check_url(url, "--base-url")
    check_output(args.output)
    if args.engine != "openai" and (args.base_url or args.api_model):
        raise UsageError("--base-url and --api-model go with --engine openai")
    if args.engine != "openai" and (args.request_timeout is not None or args.retries is not None
                                    or args.routing is not None or args.media_dir is not None
                                    or not args.pixel_check):
        raise UsageError("--request-timeout, --retries, --routing, --media-dir and --no-pixel-check go with "
                         "--engine openai")
    if args.media_dir is not None and not Path(args.media_dir).is_dir():
        raise UsageError(f"--media-dir {args.media_dir}: no such folder (create it, and start the server with "
                         "--allowed-local-media-path on it)")
    if args.request_timeout is not None and not args.request_timeout > 0:
        raise UsageError("--request-timeout must be a positive number of seconds")
    if args.retries is not None and args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    if args.samples_per_question is not None and args.samples_per_question < 1:
        raise UsageError("--samples-per-question must be at least 1")
    for flag in ("max_tool_calls", "max_images", "max_new_tokens"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "max_tool_calls" else 1):
            raise UsageError(f"--{flag.replace('_', '-')} must be {'0 or more' if flag == 'max_tool_calls' else 'at least 1'}")


def check_url(url: str, flag: str) -> None:
    """An http(s) URL with a host, or UsageError (before anything is loaded or asked)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError as exc:
        raise UsageError(f"{flag} {url!r} is not a URL ({exc}); e.g. http://127.0.0.1:8000/v1") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise UsageError(f"{flag} {url!r} is not an http(s) URL with a host; e.g. http://127.0.0.1:8000/v1")


def check_output(output: str) -> None:
    """--output is a folder this process can create files in, or UsageError."""
    import tempfile

    try:
        Path(output).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".pr-eval-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"--output {output}: cannot write there ({exc.strerror or exc}); choose a writable "
                         "folder") from None


def check_generated(tasks: list[str], args) -> None:
    """A generated benchmark (zoom) has only its bundled set: refused without --data samples or a
    folder, before anything is loaded."""
    for task in tasks:
        bench = benchmarks.of_task(task)
        if bench is not None and bench.synthetic and args.data != "samples" and not args.data_dir:
            raise UsageError(f"the {bench.short!r} benchmark is generated and has no hub copy or official "
                             "release; add --data samples")
