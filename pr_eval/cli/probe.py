"""`pr-eval probe`: a checkpoint's faithfulness card. The protocol and its interventions run on the
same questions with one engine, each an ordinary run folder inside the probe's folder, then the
card compares them (pr_eval.probe).

    pr-eval probe --model CKPT --tasks vstar,treebench,zoom [--interventions target-masked,...]

It takes the run's options (--data, --protocol, --engine, --output, --limit, --resume, ...). The
probe folder holds probe.json (the plan, then the card), probe.html and one run folder per
variant; --resume PROBE_DIR finishes it: finished runs are kept, an unfinished one resumes.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from ..data.sources import FRONT_END_ENV, use_source
from ..errors import DataError, UsageError
from ..families import get_protocol, refusal
from ..files import write_atomic
from ..probe import variants as probe_variants
from ..probe.card import PROTOCOL_KEY
from ..probe.card import SCHEMA as PROBE_SCHEMA
from ..protocol import with_overrides
from ..run import log as runlog
from ..run import quiet
from ..run.interrupts import Terminated, received, resume_command, stop, stop_signals, where_logged
from . import run as run_command
from .checks import check_args, check_generated
from .compat import check_environment

PLAN_FILE = "probe.json"
PAGE_FILE = "probe.html"


def build_parser():
    parser = run_command.build_parser()
    parser.prog = "pr-eval probe"
    parser.description = __doc__
    parser.add_argument("--interventions", default=None, metavar="NAMES",
                        help="comma-separated, from: " + ", ".join(probe_variants.CATALOGUE) + " (default: every one "
                             "the protocol has; docs/probe.md says what each shows)")
    return parser


def chosen(args, base) -> list[str]:
    if args.interventions is None:
        names = probe_variants.applicable(base)
        if not names:  # an ablation itself: say why, as for a named intervention
            try:
                probe_variants.variant(base, probe_variants.TARGET_MASKED)
            except ValueError as exc:
                raise UsageError(f"--protocol: {exc}") from None
        return names
    names = [n.strip() for n in args.interventions.split(",") if n.strip()]
    if not names:
        raise UsageError("--interventions is empty; choose from: " + ", ".join(probe_variants.CATALOGUE))
    for name in names:
        try:
            probe_variants.variant(base, name)
        except ValueError as exc:
            raise UsageError(f"--interventions: {exc}") from None
    return list(dict.fromkeys(names))


def find_run(folder: Path, fingerprint: str) -> Path | None:
    """The run folder of the probe folder that ran under the protocol of that fingerprint."""
    for info in sorted(folder.glob("*/run.json")):
        try:
            saved = json.loads(info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (saved.get("protocol") or {}).get("fingerprint") == fingerprint:
            return info.parent
    return None


def probe_folder(args, plan: dict) -> Path:
    """A new probe folder under --output, or the one --resume names (refused when it is another
    probe: model, protocol, tasks, interventions, limit, data, seed or judge)."""
    if args.resume is None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        from ..run.evaluate import slug

        name = f"{slug(args.model)}-probe-{slug(plan['protocol']['name'])}-{stamp}"
        for attempt in range(1, 100):  # two probes started in the same second get two folders
            folder = Path(args.output) / (name if attempt == 1 else f"{name}-{attempt}")
            try:
                folder.mkdir(parents=True, exist_ok=False)
                return folder
            except FileExistsError:
                continue
            except OSError as exc:
                raise UsageError(f"--output {args.output}: cannot write there ({exc.strerror or exc})") from None
        raise UsageError(f"--output {args.output}: too many probes started at {stamp}")
    if args.resume in (run_command.NEWEST, run_command.AUTO):
        raise UsageError("pr-eval probe --resume needs the probe folder: --resume PROBE_DIR")
    folder = Path(args.resume)
    try:
        saved = json.loads((folder / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"--resume {folder}: not a probe folder (no readable {PLAN_FILE})") from None
    differ = [k for k in ("model", "tasks", "interventions", "limit", "data_spec", "seed", "judge")
              if saved.get(k) != plan[k]] + (["protocol"] if (saved.get("protocol") or {}).get("fingerprint")
                                             != plan["protocol"]["fingerprint"] else [])
    if differ:
        raise UsageError(f"--resume {folder}: that probe ran another {', '.join(differ)}; run the command that "
                         "started it, or leave out --resume")
    return folder


def main(argv: list[str]) -> int:
    argv = list(argv)
    os.environ[FRONT_END_ENV] = "pr-eval"
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        check_args(args)
        tasks = run_command.parse_tasks(args.tasks)
        check_generated(tasks, args)
        judge = run_command.judge_settings(args)  # each run's own judge, as a run takes it
        try:
            base = with_overrides(get_protocol(args.protocol), args.max_tool_calls, args.max_images,
                                  args.max_new_tokens, args.samples_per_question)
        except ValueError as exc:
            raise UsageError(f"--protocol: {exc}") from None
        names = chosen(args, base)
        if judge is not None:  # a judge that cannot be used is found now, not after every run
            from ..families import family_of
            from ..judge.family import check_judge_for

            try:
                check_judge_for(judge, family_of(base))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        protocols = {PROTOCOL_KEY: base, **{n: probe_variants.variant(base, n) for n in names}}
        for protocol in protocols.values():
            if (refused := refusal(protocol, tasks)) is not None:
                raise UsageError(refused)
        check_environment()
        from ..engines.config import EngineConfig
        from ..models import ModelNotFound

        try:
            engine_config = EngineConfig.from_options(args, max_concurrency=args.batch_size)
        except ModelNotFound as exc:
            raise UsageError(str(exc)) from None
        plan = {"schema": PROBE_SCHEMA, "model": args.model, "model_path": engine_config.model,
                "protocol": base.record(), "tasks": tasks, "interventions": names, "limit": args.limit,
                "data_spec": run_command.data_spec(args), "seed": args.seed,
                "judge": judge.record() if judge is not None else None,
                "variants": {k: {"name": p.name, "fingerprint": p.fingerprint} for k, p in protocols.items()}}
        folder = probe_folder(args, plan)
    except UsageError as exc:
        return stop(f"pr-eval probe: error: {exc}", 2, keep_log=False)
    if not args.verbose:
        quiet.enable()
        runlog.open_log(folder, ["pr-eval", "probe", *argv])
        runlog.adopt(folder)
    use_source(plan["data_spec"])
    write_atomic(folder / PLAN_FILE, json.dumps(plan, indent=2) + "\n")
    print(f"pr-eval probe: {folder} ({len(protocols)} runs: {', '.join(protocols)}; if interrupted, run the same "
          f"command with --resume {folder})", file=sys.stderr)
    return _run_all(args, argv, folder, plan, protocols, engine_config, tasks, judge)


def _run_all(args, argv, folder: Path, plan: dict, protocols: dict, engine_config, tasks, judge) -> int:
    from tqdm import tqdm

    from ..compare.sides import InputError
    from ..engines import EngineError
    from ..probe.card import build_card, card_text
    from ..run.evaluate import RunError, evaluate
    from ..run.store import ResumeRefused, StoreError

    engine, folders = None, {}
    progress = tqdm(total=0, desc="probe", unit="question")  # one bar: each run adds its questions
    try:
        with stop_signals():
            for key, protocol in protocols.items():
                existing = find_run(folder, protocol.fingerprint)
                if existing is not None and (existing / "results.json").is_file():
                    folders[key] = existing
                    continue
                if engine is None:  # one engine for every variant (the pixel bounds are the protocol's)
                    engine = engine_config.build(protocols[PROTOCOL_KEY])
                run = evaluate(model=args.model, model_path=engine_config.model, tasks=tasks, protocol=protocol,
                               limit=args.limit, output=folder, batch_size=args.batch_size, engine=engine,
                               resume=existing, schedule=args.schedule, seed=args.seed,
                               command=["pr-eval", "probe", *argv], judge=judge, progress=progress)
                folders[key] = run.folder
    except (KeyboardInterrupt, Terminated) as exc:
        status, what = (143, "terminated (SIGTERM)") if isinstance(exc, Terminated) else (130, "interrupted")
        return stop(f"\npr-eval probe: {what}; to finish the probe: "
                    f"{resume_command(['probe', *argv], folder)}", status)
    except Exception as exc:  # noqa: BLE001 - one line for every way a run can end, the rest in the log
        if received() is not None:
            return stop(f"\npr-eval probe: interrupted; to finish the probe: "
                        f"{resume_command(['probe', *argv], folder)}", 143 if received() == signal.SIGTERM else 130)
        if isinstance(exc, ResumeRefused):  # the folder holds another evaluation: resuming cannot help
            return stop(f"pr-eval probe: error: {exc}", 2)
        if isinstance(exc, (EngineError, DataError, RunError, StoreError)):
            return stop(f"pr-eval probe: error: {exc}{where_logged()}; to finish the probe: "
                        f"{resume_command(['probe', *argv], folder)}", 1)
        runlog.write(traceback.format_exc())  # a bug of ours: one line here, the traceback in the log
        if runlog.log_path() is None:
            raise
        return stop(f"pr-eval probe: internal error: {type(exc).__name__}: {exc}{where_logged()}", 1)
    finally:
        progress.close()
        if engine is not None:
            engine.close()
    try:
        card = build_card(folders[PROTOCOL_KEY], {k: f for k, f in folders.items() if k != PROTOCOL_KEY})
    except InputError as exc:  # a run folder of the probe was edited or damaged
        return stop(f"pr-eval probe: error: {exc}", 1)
    plan.update({"runs": {k: f.name for k, f in folders.items()}, "card": card,
                 "methods": {k: probe_variants.CATALOGUE[k] for k in plan["interventions"]}})
    write_atomic(folder / PLAN_FILE, json.dumps(plan, indent=2, allow_nan=False) + "\n")
    try:
        from ..probe.page import write_page

        write_page(folder, plan)
    except Exception as exc:  # noqa: BLE001 - the card is saved; a page that fails only warns
        logging.getLogger(__name__).warning("the probe's page could not be written (%s: %s)", type(exc).__name__, exc)
    runlog.close()
    title = (f"probe of {args.model} under {plan['protocol']['name']} ({plan['protocol']['fingerprint']}): "
             "accuracy under each intervention, its paired difference to the protocol's")
    print(card_text(card, title))
    print(f"\nprobe: {folder}")
    return 0
