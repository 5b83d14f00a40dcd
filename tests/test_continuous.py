"""The continuous schedule through the real vLLM engine (CPU, tiny model).

Every turn is forced with structured outputs, so greedy decoding makes each trajectory's work the
same whatever the schedule; the schedules differ only in when each turn reaches the engine."""

from __future__ import annotations

import threading

import pytest
from conftest import RecordingEngine, crop_call, noise_image, scripted, select_call

from pr_eval.errors import DataError
from pr_eval.loop.steps import SCHEDULES, effective_schedule, run_samples
from pr_eval.protocol import PIXEL_REASONER as P
from pr_eval.trajectory import ANSWERED, DATA_ERROR, ENGINE_ERROR, MAX_TOOL_CALLS, Sample

IMAGE = noise_image(640, 480, seed=3)
FRAMES = [noise_image(320, 240, seed=k) for k in range(16)]
ANSWER = "\\boxed{B}"
LONG_ANSWER = "Let me think about every part of the picture. " * 6 + ANSWER  # ~280 tokens, one turn


def crops(n: int) -> list[str]:
    """n valid crops, each of the image the previous one added, with reasoning of varied length."""
    return [("Zoom in. " * k) + crop_call([0.1, 0.1, 0.7, 0.7], target=k + 1) for k in range(n)]


SCRIPTS = {
    "long": [LONG_ANSWER],
    "quick": crops(1) + [ANSWER],          # its second turn must not wait for "long"'s first
    "zero": [ANSWER],
    "two": crops(2) + [ANSWER],
    "three": crops(3) + [ANSWER],
    "four": crops(4) + [ANSWER],
    "cap": crops(5),                       # the fifth call is not executed
    "bad_call": ['<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1\n</tool_call>',
                 ANSWER],
    "video": [select_call(2, 9), crop_call([0.2, 0.2, 0.6, 0.6], target=2), "\\boxed{A}"],
    "unreadable": [ANSWER],
    "too_long": [ANSWER],
}


def samples(loads: list | None = None) -> list[Sample]:
    """The workload, in SCRIPTS order; `loads` (if given) records each image load."""

    def loader(name, images):
        def load():
            if loads is not None:
                loads.append(name)
            if name == "unreadable":
                raise DataError("unreadable image x.jpg")
            return list(images)
        return load

    out = []
    for name in SCRIPTS:
        question = "many words " * 2000 if name == "too_long" else "What color is the cup?\n(A) red\n(B) blue"
        video = name == "video"
        out.append(Sample("t", name, question, "B", load_images=loader(name, FRAMES if video else [IMAGE]),
                          is_video=video))
    return out


def run(engine, schedule: str, batch_size: int = 64):
    """(trajectories, event log, finished sample ids in call order, most trajectories open at once)."""
    events, done, loads = [], [], []
    lock = threading.Lock()
    guide = scripted(SCRIPTS)
    widest = [0]

    def logging_guide(traj):
        with lock:
            events.append(("turn", traj.sample_id, len(traj.generations)))
            widest[0] = max(widest[0], len(loads) - len(done))
        return guide(traj)

    def on_finish(traj):
        assert traj.pixels or traj.stop_reason == DATA_ERROR  # still there for a run store to save
        with lock:
            events.append(("done", traj.sample_id))
            widest[0] = max(widest[0], len(loads) - len(done))
            done.append(traj.sample_id)

    trajs = run_samples(engine, samples(loads), P, batch_size=batch_size, guide=logging_guide,
                        on_finish=on_finish, schedule=schedule)
    return trajs, events, done, widest[0]


@pytest.fixture(scope="module")
def runs(engine):
    out = {schedule: run(engine, schedule) for schedule in SCHEDULES}
    out["continuous, 3 open"] = run(engine, "continuous", batch_size=3)
    return out


def test_every_schedule_gives_the_same_trajectories(runs):
    records = {name: [t.to_record() for t in trajs] for name, (trajs, *_) in runs.items()}
    reference = records.pop("turn-sync")
    for name, got in records.items():
        assert [r["sample_id"] for r in got] == list(SCRIPTS), name  # input order
        assert got == reference, name
    trajs = {t.sample_id: t for t in runs["continuous"][0]}
    # the workload did what it was forced to do: 0 to 4 calls, the cap, a bad call, a video, errors
    assert {n: len(trajs[n].tool_calls) for n in ("zero", "quick", "two", "three", "four")} == \
        {"zero": 0, "quick": 1, "two": 2, "three": 3, "four": 4}
    assert all(trajs[n].stop_reason == ANSWERED and all(c.ok for c in trajs[n].tool_calls)
               for n in ("long", "zero", "quick", "two", "three", "four"))
    assert trajs["cap"].stop_reason == MAX_TOOL_CALLS and len(trajs["cap"].generations) == 5
    assert trajs["bad_call"].tool_calls[0].error_kind == "malformed" and trajs["bad_call"].stop_reason == ANSWERED
    assert [c.ok for c in trajs["video"].tool_calls] == [True, True]
    assert trajs["unreadable"].stop_reason == DATA_ERROR
    assert all(not t.pixels for t in trajs.values())


def test_an_over_long_prompt_fails_only_its_own_trajectory(runs):
    trajs = {t.sample_id: t for t in runs["continuous"][0]}
    assert trajs["too_long"].stop_reason == ENGINE_ERROR and "maximum context length" in \
        trajs["too_long"].error
    assert [n for n, t in trajs.items() if t.stop_reason == ENGINE_ERROR] == ["too_long"]


@pytest.mark.parametrize("name", ["continuous", "continuous, 3 open", "one-at-a-time"])
def test_on_finish_once_per_sample(runs, name):
    _, _, done, _ = runs[name]
    assert sorted(done) == sorted(SCRIPTS)


def test_a_trajectory_goes_on_without_waiting_for_slower_ones(runs):
    """"quick" sends its second turn while "long" is still writing its first; turn by turn it
    cannot, since every second turn waits until the whole first turn is done."""
    def order(name):
        events = runs[name][1]
        return events.index(("turn", "quick", 1)) < events.index(("done", "long"))

    assert order("continuous") and order("continuous, 3 open")
    assert not order("turn-sync") and not order("one-at-a-time")


def test_open_trajectories_are_bounded(runs):
    """Images are loaded only when a place frees up: a long run never holds every sample's pixels."""
    assert runs["continuous, 3 open"][3] <= 3
    assert runs["continuous"][3] > 3  # the bound is what limits it, not the workload
    assert runs["one-at-a-time"][3] == 1


def test_engines_without_submit_run_turn_by_turn(engine):
    assert effective_schedule(engine, "continuous") == "continuous"
    assert effective_schedule(RecordingEngine(engine), "continuous") == "turn-sync"
    assert effective_schedule(RecordingEngine(engine), "one-at-a-time") == "one-at-a-time"
    with pytest.raises(ValueError, match="unknown schedule 'fast'; choose from: continuous, turn-sync, one-at-a-time"):
        run_samples(engine, [], P, schedule="fast")


class BrokenEngine:
    """A ContinuousEngine whose engine died: every request's future raises EngineError."""

    name = "broken"

    def submit(self, request, decoding):
        from concurrent.futures import Future

        from pr_eval.engines import EngineError

        future = Future()
        future.set_exception(EngineError("the vLLM engine failed: EngineDeadError"))
        return future

    def generate(self, requests, decoding):  # pragma: no cover - the continuous schedule uses submit
        raise AssertionError("not used")


def test_an_engine_that_cannot_serve_stops_the_run():
    from pr_eval.engines import EngineError

    finished = []
    with pytest.raises(EngineError, match="EngineDeadError"):
        run_samples(BrokenEngine(), samples()[:3], P, on_finish=finished.append)
    assert finished == []  # nothing is recorded as if the model had answered
