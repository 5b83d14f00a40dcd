"""Every server reply is data: a scripted OpenAI-compatible server on loopback answers each V*
sample's first turn with one poison turn or one odd reply; the run must record each as that
sample's outcome and finish with exit 0, and resuming the finished run must start no engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, JsonHandler, start_server, stop_server

from pr_eval.data.load import SAMPLES_DIR

pytestmark = pytest.mark.server  # starts a server, a subprocess or a browser: not in make test-fast

PR_EVAL = Path(sys.executable).parent / "pr-eval"
CROP = '<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.1, 0.6, 0.6], "target_image": 1}}\n</tool_call>'


def _call(arguments: str) -> str:
    return '<tool_call>\n{"name": "crop_image_normalized", "arguments": ' + arguments + "}\n</tool_call>"


# What the server answers to a sample's first turn (its later turns get a boxed letter).
FIRST_TURNS = {
    "surrogate": {"content": _call('{"bbox_2d": [0.1, 0.1, 0.5, 0.5], "target_image": "\\ud800"}')},
    "huge_int": {"content": _call('{"bbox_2d": [' + "9" * 400 + ', 0.1, 0.5, 0.5], "target_image": 1}')},
    "deep": {"content": _call('{"bbox_2d": [0.1, 0.1, 0.5, 0.5], "target_image": 1, "x": '
                              + "[" * 600 + "]" * 600 + "}")},
    "raw_surrogate": {"raw_content": '"I see \\ud800 here. \\\\boxed{A}"'},  # a lone surrogate in the reply itself
    "null_body": {"body": "null"},
    "no_message": {"body": json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "stub",
                                       "choices": [{"index": 0, "finish_reason": "stop"}]})},
    "null_usage": {"content": CROP, "usage": {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}},
    "null_content": {"content": None},
    "stall": {"stall": 30},
}


def _reply(content, usage=None, raw_content=None) -> bytes:
    text = raw_content if raw_content is not None else json.dumps(content)
    usage = json.dumps(usage or {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120})
    return ('{"id": "x", "object": "chat.completion", "created": 0, "model": "stub", "choices": [{"index": 0, '
            '"message": {"role": "assistant", "content": ' + text + '}, "finish_reason": "stop"}], "usage": '
            + usage + "}").encode()


class Script:
    def __init__(self, behaviour_of_question: dict[str, str]):
        self.behaviour_of_question = behaviour_of_question
        self.requests = 0
        self.lock = threading.Lock()

    def handler(self):
        script = self

        class Handler(JsonHandler):
            def _send(self, body: bytes):
                self.send_json(200, body)

            def do_GET(self):
                with script.lock:
                    script.requests += 1
                self._send(json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}).encode())

            def do_POST(self):
                with script.lock:
                    script.requests += 1
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                messages = request["messages"]
                question = next(p["text"] for p in messages[1]["content"] if p["type"] == "text")
                behaviour = next((b for q, b in script.behaviour_of_question.items() if question.startswith(q)), None)
                if behaviour is None or any(m["role"] == "assistant" for m in messages):
                    return self._send(_reply("Looking closer. \\boxed{A}"))
                turn = FIRST_TURNS[behaviour]
                if "stall" in turn:
                    time.sleep(turn["stall"])  # accepted, never answered in time
                    return
                if "body" in turn:
                    return self._send(turn["body"].encode())
                self._send(_reply(turn.get("content"), turn.get("usage"), turn.get("raw_content")))

        return Handler


@pytest.fixture
def stub_server():
    frame = pd.read_parquet(SAMPLES_DIR / "vstar" / "vstar.parquet").sort_values("qid")
    names = list(FIRST_TURNS)
    behaviour = {q: names[i] for i, q in enumerate(frame.question) if i < len(names)}
    script = Script(behaviour)
    server = start_server(script.handler(), block_on_close=False)
    yield server.root + "/v1", script, dict(zip(frame.qid, frame.question)), behaviour
    stop_server(server)


def _pr_eval(*args, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([str(PR_EVAL), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_poison_turns_and_odd_replies_are_recorded_per_sample_and_the_run_finishes(stub_server, tmp_path):
    url, script, question_of, behaviour_of = stub_server
    args = ["--model", "stub", "--engine", "openai", "--base-url", url, "--tasks", "vstar", "--data", "samples",
            "--request-timeout", "1", "--retries", "1", "--no-pixel-check", "--output", str(tmp_path)]
    started = time.monotonic()
    result = _pr_eval(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 120  # the stalled request cost seconds, not its 30 s sleep times retries
    [folder] = tmp_path.iterdir()
    records = {r["sample_id"]: r for r in map(json.loads, (folder / "samples_pr_vstar.jsonl").read_text().splitlines())}
    assert len(records) == len(question_of)
    outcome = {behaviour_of[question_of[qid]]: r for qid, r in records.items() if question_of[qid] in behaviour_of}
    lost = {"null_body", "no_message", "null_content", "stall"}
    for name in lost:  # the server's failure: lost, never a wrong answer
        assert outcome[name]["stop_reason"] == "engine_error", (name, outcome[name]["stop_reason"])
        assert outcome[name]["error"], name
    assert "holds no text (content null" in outcome["null_content"]["error"]
    assert "holds no text (no message" in outcome["no_message"]["error"]
    assert "timed out" in outcome["stall"]["error"]
    for name in ("surrogate", "huge_int", "deep", "null_usage", "raw_surrogate"):  # the model's turns: answered
        assert outcome[name]["stop_reason"] == "answered", (name, outcome[name])
    assert outcome["surrogate"]["tool_calls"][0]["error_kind"] == "bad_arguments"
    assert outcome["huge_int"]["tool_calls"][0]["error_kind"] == "bad_arguments"  # float(9..9) overflows
    assert outcome["deep"]["tool_calls"][0]["ok"] is True
    assert outcome["null_usage"]["tool_calls"][0]["ok"] is True
    assert "\ufffd" in json.dumps(outcome["raw_surrogate"]["messages"], ensure_ascii=False)
    summary = json.loads((folder / "results.json").read_text())
    assert summary["n_samples"] == {"pr_vstar": len(question_of)}

    before = script.requests
    again = _pr_eval(*args, "--resume", str(folder))
    assert again.returncode == 0, again.stderr[-3000:]
    assert script.requests == before  # every sample was saved: no engine, not even a /models check
