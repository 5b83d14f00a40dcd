"""A run spread over a Ray cluster: one Ray task per shard (`pr-eval --shard K/N`), retried by Ray
when it fails, then the shards merged into one run folder (`pr-eval ray`, pr_eval.cli.ray_launch).

    pr-eval ray --shards N <run options> -> [here: N Ray tasks, each running the shard's command
        `pr-eval <run options> --output WORK --shard K/N --resume auto` as a child process on a node
        with the CPUs and GPUs it asked for; one progress bar read off the shards' journals]
        -> pr_eval.run.merge -> one run folder, equal to the unsharded run's

A task runs the same command a Slurm array task runs (docs/examples/shards.sbatch), as a process
of its own: the shard's signals, log, journal and engine are an ordinary run's, and a retried
task's `--resume auto` finishes what the attempt before it saved. The child dies with the Ray
worker that started it (Linux's parent-death signal; its engine's processes follow it through
pr_eval.engines.reaper), so a killed worker's shard never writes beside its retry.

Retried (Ray's max_retries): a worker that dies (SIGKILL, a lost node) and a shard that exits
with a failure (1), is interrupted or terminated (130, 143) or killed by a signal. Not retried: a
shard's own refusal (exit 2: a bad option, an unknown model, data it cannot read), which the same
command would meet again.

Ray is imported only by `launch`: the rest is plain Python (the tests run it without a cluster).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data.shards import Shard
from .store import RESULTS_FILE, RUN_FILE, StoreError, read_run_info, saved_count

# The driver's variables a shard needs on any node: data and model locations, offline switches,
# the servers' key, the test hooks. Nothing else of the driver's environment travels.
FORWARDED = ("PR_EVAL_", "HF_", "TRANSFORMERS_", "VLLM_", "OPENAI_API_KEY", "TOKENIZERS_PARALLELISM")
USAGE_EXIT = 2  # pr-eval's exit status for a refused command line or run (not worth a retry)


class ShardFailed(Exception):
    """A shard's process failed in a way its retry may finish (Ray retries this one)."""

    def __init__(self, shard: str, status: int, line: str):
        super().__init__(shard, status, line)
        self.shard, self.status, self.line = shard, status, line

    def __str__(self) -> str:
        if self.status < 0:
            import signal

            try:
                how = f"killed by {signal.Signals(-self.status).name}"
            except ValueError:
                how = f"killed by signal {-self.status}"
        else:
            how = f"exited with status {self.status}"
        return f"{how}; the last line of its log: {self.line}"


class ShardRefused(Exception):
    """A shard's own refusal (exit 2): running it again cannot help."""

    def __init__(self, shard: str, line: str):
        super().__init__(shard, line)
        self.shard, self.line = shard, line

    def __str__(self) -> str:
        return f"shard {self.shard}: {self.line}"


@dataclass(frozen=True)
class ShardJob:
    """What one Ray task runs: the shard's command line, where, with which variables, logged where."""

    shard: str
    argv: list
    env: dict
    cwd: str
    log: str


def shard_argv(run_argv: list[str], shard: Shard, work: Path, absolute: dict[str, str]) -> list[str]:
    """The shard's command line: the run's options, then the ones the launcher decides, which
    argparse takes over any earlier occurrence (the last one wins): the shard folder's parent, the
    shard, `--resume auto` (a retry finishes the last attempt's folder), and each of `absolute`'s
    options ({"--data-dir": path, ...}) as an absolute path (a task's working folder may differ)."""
    out = [*run_argv, "--output", str(work), "--shard", str(shard), "--resume", "auto"]
    for option, path in absolute.items():
        out += [option, str(Path(path).resolve())]
    return out


def forwarded_env(environ: dict[str, str]) -> dict[str, str]:
    """The driver's variables every shard gets (FORWARDED), and tqdm off: the driver draws the bar."""
    out = {k: v for k, v in environ.items() if k.startswith(FORWARDED)}
    out["TQDM_DISABLE"] = "1"
    return out


def last_line(path: Path, limit: int = 64 * 1024) -> str:
    """The last non-empty line of a shard's log (its one-line error), or a note that there is none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - limit))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    lines = [" ".join(line.split()) for line in tail.replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line and not line.startswith("== pr-eval ray")]
    return lines[-1][:600] if lines else f"(nothing in {path})"


def run_shard(job: ShardJob) -> dict:
    """The Ray task: the shard's command as a child process that dies with this worker. Returns
    where it ran; raises ShardFailed (retried) or ShardRefused (not)."""
    host = socket.gethostname()
    with open(job.log, "ab") as log:
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        log.write(f"== pr-eval ray: shard {job.shard}, attempt on {host} (worker {os.getpid()}) at {stamp}\n".encode())
        log.flush()
        env = {**os.environ, **job.env}
        cwd = job.cwd if os.path.isdir(job.cwd) else None
        child = subprocess.Popen([sys.executable, "-m", __name__, str(os.getpid()), *job.argv], env=env, cwd=cwd,
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        status = child.wait()
    if status == 0:
        return {"shard": job.shard, "host": host}
    line = last_line(Path(job.log))
    if status == USAGE_EXIT:
        raise ShardRefused(job.shard, line)
    raise ShardFailed(job.shard, status, line)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when `parent` (the Ray worker) dies; exit at once if
    it is gone already. Linux only: elsewhere the shard outlives a killed worker."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the worker died between our fork and the prctl
        os._exit(143)


# --- What the driver reads off the shard folders -----------------------------------------------

@dataclass(frozen=True)
class Progress:
    done: int              # samples (rollouts) saved over all shards
    total: int | None      # all shards' samples, once every shard has loaded its data
    finished: int          # shards with results.json


def shard_folders(work: Path, count: int) -> dict[int, list[Path]]:
    """{K: the run folders of shard K/count under `work`, the finished first, then the newest}."""
    return {k: [folder for folder, _info in runs] for k, runs in _shard_runs(work, count).items()}


def _shard_runs(work: Path, count: int) -> dict[int, list[tuple[Path, dict]]]:
    """shard_folders' folders with their run.json, each read once."""
    found: dict[int, list[tuple]] = {}
    for info_path in Path(work).glob(f"*/{RUN_FILE}"):
        try:
            info = read_run_info(info_path.parent)
        except StoreError:
            continue
        text = str(info.get("shard") or "")
        index, _, of = text.partition("/")
        if not (index.isdigit() and of == str(count)):
            continue
        finished = (info_path.parent / RESULTS_FILE).exists()
        found.setdefault(int(index), []).append((finished, str(info.get("started") or ""), info_path.parent, info))
    return {k: [(f, i) for *_, f, i in sorted(v, key=lambda e: e[:2], reverse=True)] for k, v in found.items()}


def progress(work: Path, count: int) -> Progress:
    """How far the shards under `work` are: saved samples, the run's total, finished shards."""
    done, totals, finished = 0, [], 0
    for runs in _shard_runs(work, count).values():
        folder, info = runs[0]
        done += saved_count(folder)
        finished += (folder / RESULTS_FILE).exists()
        data = info.get("data") or {}
        samples = [record.get("samples") for record in data.values() if isinstance(record, dict)]
        if data and all(isinstance(s, int) for s in samples):  # recorded at once, for every task
            sampling = ((info.get("protocol") or {}).get("settings") or {}).get("sampling") or {}
            totals.append(sum(samples) * int(sampling.get("rollouts") or 1))
    total = sum(totals) if len(totals) == count else None
    return Progress(done, total, finished)


# --- The driver: Ray tasks placed, watched and collected --------------------------------------

class LaunchError(Exception):
    """The cluster cannot run the shards as asked (one line)."""


@dataclass(frozen=True)
class Resources:
    cpus: float
    gpus: float


def check_fits(nodes: list[dict], need: Resources) -> None:
    """LaunchError unless some live node of `nodes` (ray.nodes()) has a shard's CPUs and GPUs."""
    alive = [n.get("Resources") or {} for n in nodes if n.get("Alive")]
    if any(r.get("CPU", 0) >= need.cpus and r.get("GPU", 0) >= need.gpus for r in alive):
        return
    biggest = max(alive, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    what = _count(need.cpus, "CPU") + (f" and {_count(need.gpus, 'GPU')}" if need.gpus else "")
    has = f"{_count(biggest.get('CPU', 0), 'CPU')} and {_count(biggest.get('GPU', 0), 'GPU')}"
    hint = (" (--gpus-per-shard 0 runs each shard's engine on CPUs; --engine openai --base-url URL shares "
            "servers)" if need.gpus and not biggest.get("GPU") else " (--cpus-per-shard / --gpus-per-shard ask less)")
    raise LaunchError(f"no node of the Ray cluster has a shard's {what}: the largest has {has}{hint}")


def _count(n: float, unit: str) -> str:
    return f"{n:g} {unit}" + ("" if n == 1 else "s")


@dataclass
class Outcome:
    done: list[str]                   # shards that finished
    failed: dict[str, str]            # shard -> its last error, after its retries
    refused: dict[str, str]           # shard -> its refusal (not retried)


def launch(jobs: list[ShardJob], need: Resources, max_retries: int, address: str | None, work: Path,
           make_bar=None, poll_s: float = 1.0) -> Outcome:
    """Run every job as a Ray task on the cluster `cluster_address` picks and wait for all; the bar
    `make_bar()` returns (tqdm) follows the shards' journals, made once the cluster is found able
    to hold a shard (else LaunchError, before any task). A shard's refusal cancels the shards not
    yet finished (they would be refused alike, or merged with nothing). Ctrl-C and SIGTERM cancel
    every task (KeyboardInterrupt, Terminated): the shards' journals keep what they saved."""
    import logging

    import ray

    target = cluster_address(address, os.environ)
    logging.getLogger("ray").setLevel(logging.ERROR)
    try:
        with _stderr_into(work / "ray-init.log"):  # Ray's own start-up lines (C++ included) stay off the terminal
            ray.init(address=target, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as exc:  # a refused token, a cluster of another Ray version, ...
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise LaunchError(f"cannot join the Ray cluster at {target}: {first.strip()[:300]}") from None
    bar = None
    try:
        with _stop_signals():  # after ray.init, which installs a SIGTERM handler of its own
            check_fits(ray.nodes(), need)
            bar = make_bar() if make_bar is not None else None
            return _watch(jobs, need, max_retries, work, bar, poll_s)
    finally:
        if bar is not None:
            bar.close()
        ray.shutdown()


@contextlib.contextmanager
def _stop_signals():
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt while the block runs (the one exception
    Ray's C++ waits let through); SIGTERM's leaves the block as Terminated."""
    import signal

    from .interrupts import Terminated

    got: list[int] = []

    def handler(signum, frame):
        got.append(signum)
        raise KeyboardInterrupt()

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except KeyboardInterrupt:
        if got and got[0] == signal.SIGTERM:
            raise Terminated() from None
        raise
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# Where `ray start` notes the cluster it made on this machine (what ray.init() with no address reads).
RAY_CURRENT_CLUSTER = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"


def cluster_address(address: str | None, environ: dict) -> str:
    """What ray.init gets: `address` or $RAY_ADDRESS, which must answer (LaunchError: ray.init would
    wait for it for minutes); without either, the cluster `ray start` made on this machine if it
    answers, else "local" (a new cluster, gone with the command). A cluster killed without `ray
    stop` leaves its note behind, which ray.init alone would follow for ever."""
    given = address or environ.get("RAY_ADDRESS")
    if given and given != "auto":
        if not answers(given):
            raise LaunchError(f"no Ray cluster answers at {given}: start one there (`ray start --head`) or give "
                              "the head node's address (--address HOST:PORT)")
        return given
    try:
        noted = RAY_CURRENT_CLUSTER.read_text().strip()
    except OSError:
        noted = ""
    if noted and answers(noted):
        return noted
    if given == "auto":
        raise LaunchError("--address auto: no Ray cluster started on this machine answers (`ray start --head` "
                          "starts one; without --address pr-eval ray starts its own)")
    return "local"


def answers(address: str, timeout: float = 5.0) -> bool:
    """Whether something listens at a HOST:PORT address (other forms are Ray's to resolve)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():
        return True
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _stderr_into(path: Path):
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _watch(jobs: list[ShardJob], need: Resources, max_retries: int, work: Path, bar, poll_s: float) -> Outcome:
    import ray

    count = len(jobs)
    task = ray.remote(run_shard).options(num_cpus=need.cpus, num_gpus=need.gpus, max_retries=max_retries,
                                         retry_exceptions=[ShardFailed])
    pending = {task.remote(job): job.shard for job in jobs}
    try:
        return _collect(pending, count, work, bar, poll_s)
    except BaseException:  # Ctrl-C: the shards stop now (their journals keep what they saved)
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def _collect(pending: dict, count: int, work: Path, bar, poll_s: float) -> Outcome:
    import ray
    from ray.exceptions import RayError, RayTaskError

    outcome = Outcome([], {}, {})
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
        for ref in ready:
            shard = pending.pop(ref)
            try:
                ray.get(ref)
                outcome.done.append(shard)
            except RayTaskError as exc:
                cause = exc.cause if isinstance(exc.cause, (ShardFailed, ShardRefused)) else None
                if isinstance(cause, ShardRefused):
                    outcome.refused[shard] = cause.line
                    for other in pending:
                        ray.cancel(other, force=True)
                else:
                    outcome.failed[shard] = str(cause) if cause else " ".join(str(exc).split())[:600]
            except RayError as exc:  # the worker died after its last retry, or the task was cancelled
                outcome.failed[shard] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        if bar is not None:
            seen = progress(work, count)
            if seen.total is not None and bar.total != seen.total:
                bar.total = seen.total
            bar.n = seen.done
            bar.set_postfix_str(f"shards done {seen.finished}/{count}", refresh=False)
            bar.refresh()
    return outcome


if __name__ == "__main__":  # the shard's process: `python -m pr_eval.run.ray_shards WORKER_PID ARGV...`
    die_with_parent(int(sys.argv[1]))
    from ..cli import main

    sys.exit(main(sys.argv[2:]))
