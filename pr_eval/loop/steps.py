"""The pixel-reasoning loop: prompt -> generate -> tool call -> feedback turn -> ... -> answer.

`start` turns a Sample into a Trajectory holding the first prompt. `step` applies one assistant
turn to a trajectory: it records the turn, executes the tool call the turn ends with, and appends
the feedback turn, or ends the trajectory (answer, cap, error). `start` and `step` touch no
engine, file or network. Two drivers share the engine among trajectories:

- `run_continuous` (the default): each trajectory goes back to the engine as soon as its own
  turn is done and its tool has run; images are loaded and tools run on a few worker threads
  while the engine decodes the others.
- `run_turn_synchronous`: every unfinished trajectory goes to the engine in ONE `generate` call
  per turn, as the reference does; each turn waits for the slowest trajectory.

Both give the same trajectories: a trajectory's turns depend only on its own conversation.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

from ..engines import SCHEDULES
from ..engines.base import Engine, GenerationRequest, GenerationResult, can_submit
from ..errors import DataError, is_our_bug
from ..families import family_of, family_of_record
from ..families.base import image_part, text_part, video_part  # noqa: F401 - re-exported for tests and ask
from ..probe.variants import intervene_sample
from ..protocol import PIXEL_REASONER_FAMILY, Protocol
from ..trajectory import DATA_ERROR, ENGINE_ERROR, MAX_TOOL_CALLS, Generation, Sample, Trajectory
from . import chat
from .sampling import turn_seed
from .tools import clean_text

log = logging.getLogger(__name__)

# Chooses a structured-output constraint for a trajectory's next turn (tests and benchmarks).
Guide = Callable[[Trajectory], "str | None"]


def scripted(turns: dict[str, list[str]]) -> Guide:
    """A guide that makes the engine write `turns[sample_id][k]` as the k-th assistant turn (then
    leaves it free): how tests and benchmarks make a real engine do chosen, identical work."""

    def guide(traj: Trajectory) -> str | None:
        script = turns[traj.sample_id]
        k = len(traj.generations)
        return re.escape(script[k]) if k < len(script) else None

    return guide


def start(sample: Sample, protocol: Protocol) -> Trajectory:
    """The trajectory of a sample with its first prompt (`Family.open` of the protocol's family:
    system prompt, first user turn, the images as shown); a data error ends it at once."""
    family = family_of(protocol)
    traj = Trajectory(task=sample.task, sample_id=sample.sample_id, question=sample.question,
                      target=sample.answer, protocol=protocol.name, fingerprint=protocol.fingerprint,
                      meta=dict(sample.meta), is_video=sample.is_video, started_at=time.time(),
                      rollout=sample.rollout, seed=sample.seed,
                      family=None if protocol.family == PIXEL_REASONER_FAMILY else protocol.family)
    try:
        if sample.is_video and not family.video:
            raise DataError(f"protocol {protocol.name!r} runs images only; this sample is a video")
        if protocol.intervention is not None:  # a faithfulness probe's edit (pr_eval.probe.variants)
            sample, edited = intervene_sample(sample, protocol)
            traj.meta["intervention"] = edited or {"name": protocol.intervention.name}
            traj.target = sample.answer  # a counterfactual's edited option
        family.open(traj, sample, protocol)
    except Exception as exc:  # noqa: BLE001 - the one boundary around a sample's data: whatever its
        # loader raises (a DataError saying why, or a decoder's own exception) is this sample's error;
        # a bug of pr-eval's own code stops the run (errors.is_our_bug)
        if is_our_bug(exc):
            raise
        traj.stop_reason = DATA_ERROR
        traj.error = str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"[:500]
        traj.pixels, traj.images = [], []
        traj.messages = [m for m in traj.messages if m["role"] == "system"]
        traj.messages.append({"role": "user", "content": [text_part(family.user_text(sample, protocol))]})
    return traj


def request(traj: Trajectory, guide: Guide | None = None) -> GenerationRequest:
    """The trajectory's next turn as an engine request; a sampled rollout's turn carries its own
    seed (`sampling.turn_seed`), so the rollout is the same whatever else the engine is running."""
    seed = None if traj.seed is None else turn_seed(traj.seed, len(traj.generations))
    session = f"{traj.task}/{traj.sample_id}" + ("" if traj.rollout is None else f"#{traj.rollout}")
    return GenerationRequest(messages=traj.messages, images=traj.pixels,
                             constraint=guide(traj) if guide else None, seed=seed, session=session)


def step(traj: Trajectory, result: GenerationResult, protocol: Protocol) -> Trajectory:
    """Apply one generated assistant turn to an unfinished trajectory (in place; returned): an
    engine error ends it; otherwise the turn (decoded, `<|im_end|>` removed) is recorded and the
    protocol's family applies it (`Family.step`: run its call and append the feedback, or end)."""
    if result.error is not None:
        traj.error = result.error
        return _finish(traj, ENGINE_ERROR)
    text = clean_text(result.text + (result.stop or "")).replace(chat.IM_END, "")
    traj.generations.append(Generation(result.prompt_tokens, result.output_tokens, result.finish_reason,
                                       stop=result.stop))
    family_of(protocol).step(traj, text, protocol)
    return traj


def max_generations(protocol: Protocol) -> int:
    """The most turns a trajectory of this protocol can take (its family's caps)."""
    return family_of(protocol).max_generations(protocol)


def _finish(traj: Trajectory, reason: str) -> Trajectory:
    """End a trajectory. Its pixels stay until the driver has handed it on (`finished`), so an
    `on_finish` callback can still save the images the model saw."""
    traj.stop_reason = reason
    return traj


def finished(traj: Trajectory, on_finish: Callable[[Trajectory], None] | None) -> None:
    """Hand a finished trajectory to `on_finish`, then drop its pixels: finished work holds none."""
    try:
        if on_finish:
            on_finish(traj)
    finally:
        traj.release_pixels()
        family_of_record(traj).release(traj)


def run_turn_synchronous(engine: Engine, trajectories: Sequence[Trajectory], protocol: Protocol,
                         guide: Guide | None = None,
                         on_finish: Callable[[Trajectory], None] | None = None) -> list[Trajectory]:
    """Advance all trajectories together until each has ended: one engine call per turn.

    A trajectory makes at most `max_generations(protocol)` generations, so the loop ends after
    that many turns whatever the model does."""
    active = [t for t in trajectories if not t.finished]
    for t in trajectories:
        if t.finished:
            finished(t, on_finish)
    for _ in range(max_generations(protocol)):
        if not active:
            break
        results = engine.generate([request(t, guide) for t in active], protocol.decoding)
        still = []
        for traj, result in zip(active, results):
            step(traj, result, protocol)
            if traj.finished:
                finished(traj, on_finish)
            else:
                still.append(traj)
        active = still
    for traj in active:  # unreachable by the caps above; kept so no trajectory is left open
        finished(_finish(traj, MAX_TOOL_CALLS), on_finish)
    return list(trajectories)


def run_continuous(engine: Engine, samples: Iterable[Sample], protocol: Protocol, max_active: int = 64,
                   guide: Guide | None = None, on_finish: Callable[[Trajectory], None] | None = None,
                   workers: int | None = None) -> list[Trajectory]:
    """Run samples with every trajectory advancing on its own; results in input order.

    At most `max_active` trajectories are open at once (started, and not yet handed on through
    `on_finish`): a sample's images are loaded only when a place frees up, so memory does not
    grow with the run. The calling thread only hands work around: `start` (image loading and
    resizing) and `step` (tool execution) run on `workers` threads, the engine (`submit`, see
    ContinuousEngine) decodes on its own, and `on_finish` runs on one more thread, once per
    sample, one call at a time, in the order trajectories finish; so a slow callback (a run store
    writing images) never holds back the next turns of the others. An EngineError from the engine
    (it can serve no one any more), or an error of `on_finish`, stops the run and is raised."""
    if max_active < 1:
        raise ValueError(f"max_active must be at least 1, got {max_active}")
    pending = iter(enumerate(samples))
    results: list[Trajectory | None] = []
    open_: set[int] = set()  # input indices of the open trajectories
    events: queue.SimpleQueue = queue.SimpleQueue()  # (kind, index, future) of finished work
    tools = ThreadPoolExecutor(max_workers=workers or _default_workers(), thread_name_prefix="pr-eval-tools")
    finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pr-eval-finish")

    def then(kind: str, index: int):
        return lambda future: events.put((kind, index, future))

    def admit() -> None:
        while len(open_) < max_active:
            item = next(pending, None)
            if item is None:
                return
            index, sample = item
            results.append(None)
            open_.add(index)
            tools.submit(start, sample, protocol).add_done_callback(then("ready", index))

    def advance(index: int, traj: Trajectory) -> None:
        """Send an unfinished trajectory's next turn to the engine, or hand a finished one on."""
        results[index] = traj
        if not traj.finished and len(traj.generations) >= max_generations(protocol):
            _finish(traj, MAX_TOOL_CALLS)  # unreachable by `step`'s caps, as in the turn-synchronous loop
        if traj.finished:
            finisher.submit(finished, traj, on_finish).add_done_callback(then("done", index))
        else:
            engine.submit(request(traj, guide), protocol.decoding).add_done_callback(then("turn", index))

    try:
        admit()
        while open_:
            kind, index, future = events.get()
            if kind == "ready":  # `start` or `step` is done
                advance(index, future.result())
            elif kind == "turn":  # the engine answered; apply the turn (and run its tool) off this thread
                tools.submit(step, results[index], future.result(), protocol).add_done_callback(then("ready", index))
            else:  # handed on: its place goes to the next sample
                future.result()
                open_.discard(index)
                admit()
    finally:
        tools.shutdown(wait=True, cancel_futures=True)
        finisher.shutdown(wait=True)
    return results  # type: ignore[return-value]


def _default_workers() -> int:
    """Threads for image loading and tools: enough to keep ahead of the engine, few enough not to
    crowd it (PIL and numpy release the GIL while they work)."""
    return max(2, min(8, os.cpu_count() or 2))


def effective_schedule(engine: Engine, schedule: str) -> str:
    """The schedule that `run_samples` will actually run: "continuous" needs an engine with
    `submit`; the others (hf, test wrappers) run it turn by turn."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from: {', '.join(SCHEDULES)}")
    if schedule == "continuous" and not can_submit(engine):
        return "turn-sync"
    return schedule


def run_samples(engine: Engine, samples: Iterable[Sample], protocol: Protocol, batch_size: int = 64,
                guide: Guide | None = None,
                on_finish: Callable[[Trajectory], None] | None = None,
                schedule: str = "continuous") -> list[Trajectory]:
    """Run samples, loading images as trajectories start; results in input order.

    schedule "continuous": up to `batch_size` trajectories in flight, each advancing as soon as
    its own turn is done (`run_continuous`; engines without `submit` run turn-sync instead);
    "turn-sync": batches of `batch_size` advance together, one engine call per turn (the
    reference's loop); "one-at-a-time": each sample runs alone to its end (peer harnesses' loop)."""
    chosen = effective_schedule(engine, schedule)
    if chosen != schedule:
        log.info("engine %r has no submit(); running the %s schedule turn by turn",
                 getattr(engine, "name", type(engine).__name__), schedule)
    if chosen == "continuous":
        return run_continuous(engine, samples, protocol, max_active=batch_size, guide=guide, on_finish=on_finish)
    if chosen == "one-at-a-time":
        batch_size = 1
    done: list[Trajectory] = []
    batch: list[Sample] = []

    def flush():
        trajs = [start(s, protocol) for s in batch]
        done.extend(run_turn_synchronous(engine, trajs, protocol, guide=guide, on_finish=on_finish))
        batch.clear()

    for sample in samples:
        batch.append(sample)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return done
