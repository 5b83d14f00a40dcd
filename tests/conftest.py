"""Shared fixtures. One real vLLM engine (CPU, tiny model) serves the whole test session."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pr_eval.loop import steps as loop
from pr_eval.engines.base import GenerationRequest
from pr_eval.loop.tools import crop_call  # noqa: F401  (tests import it from here)

ROOT = Path(__file__).resolve().parents[1]

# --- Test tiers: `make test-fast` runs what needs no engine, server, subprocess or browser -----------
# A test is marked `engine` when its fixtures (or a fixture its module lists in ENGINE_FIXTURES,
# for module fixtures that get an engine with request.getfixturevalue) start one; `server` when a
# fixture its module lists in SERVER_FIXTURES starts a server, and modules and tests that start a
# server, a subprocess or a browser themselves carry `pytest.mark.server`.
ENGINE_FIXTURES = frozenset({"engine", "demo_engine", "recording"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if (ENGINE_FIXTURES | set(getattr(item.module, "ENGINE_FIXTURES", ()))) & used:
            item.add_marker(pytest.mark.engine)
        if set(getattr(item.module, "SERVER_FIXTURES", ())) & used:
            item.add_marker(pytest.mark.server)


def load_script(name: str):
    """scripts/<name>.py as a module (make_samples: the generators of every source schema;
    train_demo: the demo model's training; lock: the lock's routes and reader)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_model() -> str:
    from pr_eval.models import resolve_model

    return resolve_model("tiny")


@pytest.fixture(scope="session")
def engine(tiny_model):
    from pr_eval.engines.vllm import VLLMEngine
    from pr_eval.protocol import PIXEL_REASONER

    engine = VLLMEngine(tiny_model, PIXEL_REASONER)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def demo_engine():
    """The trained demo model under the real vLLM engine, shared by every test that needs it."""
    from pr_eval.engines.vllm import VLLMEngine
    from pr_eval.models import resolve_model
    from pr_eval.protocol import PIXEL_REASONER

    engine = VLLMEngine(resolve_model("demo"), PIXEL_REASONER)  # its KV cache sized to the model
    yield engine
    engine.close()


# --- Local stub servers (OpenAI-compatible and judges) ------------------------------------------

class JsonHandler(BaseHTTPRequestHandler):
    """A stub server's request handler: JSON in (`read_json`) and out (`send_json`), nothing logged."""

    def read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def send_json(self, status: int, payload) -> None:
        """`payload` as JSON (or as given, when it is already bytes)."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def start_server(handler, port: int = 0, **state) -> ThreadingHTTPServer:
    """A threaded server of `handler` on 127.0.0.1 (any free port), serving in a daemon thread; each
    of `state` becomes an attribute (the handler reads it as self.server.<name>), plus `lock` and
    `root` ("http://127.0.0.1:PORT"). Stop it with `stop_server`."""
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    httpd.lock = threading.Lock()
    for name, value in state.items():
        setattr(httpd, name, value)
    httpd.root = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def stop_server(httpd: ThreadingHTTPServer) -> None:
    httpd.shutdown()
    httpd.server_close()


def chat_completion(content, model: str = "stub", prompt_tokens: int = 7, completion_tokens: int = 3) -> dict:
    """A chat.completion reply with one choice that stopped."""
    return {"id": "c", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class Borrowed:
    """A session engine lent to code that builds and closes its own (the CLI): everything passes
    through, `close` does nothing, and what was asked of `build_engine` is kept in `built`."""

    def __init__(self, inner):
        self.inner, self.built = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def close(self):
        pass

    def build_engine(self, kind, model_path, protocol, **options):
        self.built.append((kind, str(model_path), protocol.name))
        return self


class RecordingEngine:
    """Wraps an engine and keeps every request it was given (one list per generate call)."""

    name = "recording"

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[list[GenerationRequest]] = []

    def generate(self, requests, decoding):
        self.calls.append([GenerationRequest([dict(m) for m in r.messages], list(r.images), r.constraint)
                           for r in requests])
        return self.inner.generate(requests, decoding)


@pytest.fixture
def recording(engine):
    return RecordingEngine(engine)


scripted = loop.scripted  # the guide tests use to make the real engine write chosen turns


def select_call(*frames) -> str:
    return ('<tool_call>\n{"name": "select_frames", "arguments": {"target_frames": '
            f'{list(frames)}}}}}\n</tool_call>')


def noise_image(width, height, seed=0):
    """A deterministic random RGB image: every pixel differs, so a wrong crop cannot pass."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


# The workload on which every engine must give the same trajectories as offline vLLM: images
# (valid crop, crop in pixels, bad target, broken JSON, plain answer) and a video.
PARITY_ANSWER = "I can see it now. \\boxed{B}"
PARITY_IMAGE = noise_image(1000, 800, seed=1)
PARITY_FRAMES = [noise_image(320, 240, seed=k) for k in range(16)]
PARITY_SCRIPTS = {
    "valid": [crop_call([0.2, 0.3, 0.6, 0.7]), PARITY_ANSWER],
    "pixels": [crop_call([100, 160, 700, 640]), PARITY_ANSWER],
    "bad_target": [crop_call([0.2, 0.3, 0.6, 0.7], target=3), PARITY_ANSWER],
    "broken_json": ['<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.2\n</tool_call>',
                    PARITY_ANSWER],
    "plain": [PARITY_ANSWER],
    "video": [select_call(3, 7), crop_call([0.2, 0.2, 0.6, 0.6], target=2), "\\boxed{A}"],
}


def parity_samples() -> list:
    from pr_eval.trajectory import Sample

    images = [Sample("t", name, "What color is the cup?\n(A) red\n(B) blue", "B", load_images=lambda: [PARITY_IMAGE])
              for name in PARITY_SCRIPTS if name != "video"]
    video = Sample("t", "video", "What happens?\n(A) x\n(B) y", "A", load_images=lambda: list(PARITY_FRAMES),
                   is_video=True)
    return images + [video]
