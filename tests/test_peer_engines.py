"""The peers' protocols through real engines: the session's vLLM engine (CPU, tiny model), made
to write each family's own call grammar by structured outputs, and the served route against a
scripted OpenAI-compatible server that checks what each protocol sends.

The session engine was built for pixel-reasoner-v3 (its processor's pixel bounds are that
protocol's): the loop, the family's parsing, cropping, feedback and caps, and the decoding each
request carries are the peer protocol's; only the image token count differs from a peer's server."""

from __future__ import annotations

import pytest
from conftest import JsonHandler, chat_completion, noise_image, scripted, start_server, stop_server

from pr_eval.scoring import metrics
from pr_eval.engines.openai import OpenAIEngine
from pr_eval.families import family_of, get_protocol
from pr_eval.loop.steps import run_samples
from pr_eval.trajectory import ANSWERED, TOOL_ERROR, Sample

ENGINE_FIXTURES = ("offline",)  # gets the session engine with request.getfixturevalue (conftest's tiers)
IMAGE = noise_image(640, 480, seed=3)
QUESTION = ("What is the colour of the cup?\n(A) red\n(B) blue\n(C) green\n(D) white\n"
            "Answer with the option's letter from the given choices directly.")

# protocol -> {sample id: scripted turns, the stop reason, expected (crop width, height) or None}
CASES = {
    "deepeyes": {
        "zoom": (['<think>small.</think> <tool_call>{"name": "image_zoom_in_tool", "arguments": '
                  '{"bbox_2d": [100.5, 50.5, 420.5, 301.5]}}</tool_call>', "<think>red.</think> <answer>A</answer>"],
                 ANSWERED, (308, 252), 1.0),
        "json_true": (['<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1, 2, 3, 4], '
                       '"x": true}}</tool_call>'], TOOL_ERROR, None, None),  # NameError ends it; the judge decides
        "undecided": (["<answer>(A)</answer>"], ANSWERED, None, None),
    },
    "deepeyes-hrbench": {  # shown at 644x476; the turn stops at </tool_call>; the box is cut from the original
        "zoom": (['<think>small.</think> <tool_call>{"name": "image_zoom_in_tool", "arguments": '
                  '{"bbox_2d": [100, 100, 300, 300]}}</tool_call>', "<answer>A</answer>"], ANSWERED, (196, 196), 1.0),
    },
    "mini-o3-mc": {
        "zoom": (['<think>small.</think><grounding>{"bbox_2d": [0.1, 0.2, 0.5, 0.6], "source": "original_image"}'
                  '</grounding>', "<think>red.</think><answer>A</answer>"], ANSWERED, (256, 192), 1.0),
        "bad_source": (['<grounding>{"bbox_2d": [0.1, 0.2, 0.5, 0.6], "source": "observation_3"}</grounding>',
                        "<answer>(B)</answer>"], ANSWERED, None, 0.0),
    },
    "mini-o3": {
        "zoom": (['<grounding>{"bbox_2d": [0, 0, 1, 1], "source": "original_image"}</grounding>',
                  "<answer>red</answer>"], ANSWERED, (639, 479), None),  # the w-1, h-1 clamp; GPT judge decides
    },
    "chain-of-focus": {
        "zoom": (['<think>small.</think> <tool_call>{"name": "image_zoom_in_tool", "arguments": '
                  '{"bbox_2d": [100, 100, 200, 200]}}</tool_call>', "<answer>(A)</answer>"],
                 ANSWERED, (308, 308), 1.0),
        "fallback": (['<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [300, 300, 100, 100]}}'
                      '</tool_call>', "<answer>B. blue</answer>"], ANSWERED, (1288, 952), None),
    },
}


def samples(cases: dict) -> list[Sample]:
    return [Sample("pr_vstar", name, QUESTION, "A", load_images=lambda: [IMAGE]) for name in cases]


@pytest.fixture(scope="module")
def offline(request):
    engine = request.getfixturevalue("engine")
    out = {}
    for name, cases in CASES.items():
        protocol = get_protocol(name)
        guide = scripted({sid: turns for sid, (turns, *_) in cases.items()})
        out[name] = {t.sample_id: t for t in run_samples(engine, samples(cases), protocol, guide=guide)}
    return out


@pytest.mark.parametrize("name,sample_id", [(n, s) for n, cases in CASES.items() for s in cases])
def test_the_real_engine_runs_each_peer_protocol(offline, name, sample_id):
    turns, stop, crop, score = CASES[name][sample_id]
    traj = offline[name][sample_id]
    assert traj.stop_reason == stop, (traj.stop_reason, traj.error)
    assert traj.family == get_protocol(name).family and len(traj.generations) == len(turns)
    crops = [info for info in traj.images if info.kind == "crop"]
    assert [(c.width, c.height) for c in crops] == ([crop] if crop else [])
    verdict = family_of(get_protocol(name)).verdict(traj, "A")
    assert verdict.score == score
    scored = metrics.sample_metrics(traj, {"answer": "A"}, "vstar")
    assert traj.scores.get("undecided", False) == (score is None) and scored["accuracy"] == (score or 0.0)


# --- The served route -----------------------------------------------------------------------------

class Scripted(JsonHandler):
    """Answers the k-th assistant turn of a conversation with `server.turns[k]` and keeps each body."""

    def do_GET(self):
        self.send_json(200, {"object": "list", "data": [{"id": "peer", "object": "model"}]})

    def do_POST(self):
        body = self.read_json()
        with self.server.lock:
            self.server.bodies.append(body)
        k = sum(1 for m in body["messages"] if m["role"] == "assistant")
        self.send_json(200, chat_completion(self.server.turns[k], model="peer"))


@pytest.mark.server
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_served_route_sends_each_protocols_own_decoding(name):
    turns, stop, crop, score = CASES[name]["zoom"]
    protocol = get_protocol(name)
    httpd = start_server(Scripted, turns=turns, bodies=[])
    try:
        engine = OpenAIEngine(httpd.root + "/v1", "peer", max_concurrency=2, protocol=protocol, pixel_check=False)
        try:
            [traj] = run_samples(engine, samples({"zoom": None}), protocol)
        finally:
            engine.close()
    finally:
        stop_server(httpd)
    assert traj.stop_reason == stop and family_of(protocol).verdict(traj, "A").score == score
    assert [(i.width, i.height) for i in traj.images if i.kind == "crop"] == [crop]
    first, second = httpd.bodies
    decoding = protocol.decoding
    assert first["max_tokens"] == decoding.max_new_tokens and first["temperature"] == decoding.temperature
    assert first.get("stop") == (list(decoding.stop_tokens) or None)
    assert first["skip_special_tokens"] is True and first["min_tokens"] == 0
    # the second request holds the system prompt, the question, the turn and the feedback with the crop
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert second["messages"][0]["content"] == protocol.system_prompt
    shown = [p for m in second["messages"] for p in m["content"] if isinstance(m["content"], list)
             and p.get("type") == "image_url"]
    assert len(shown) == 2


@pytest.mark.parametrize("name,turn,answer", [
    ("deepeyes", "<think>red.</think> <answer>B</answer>", "B"),
    ("mini-o3", "<think>red.</think><answer>(B) blue</answer>", "(B) blue"),
    ("chain-of-focus", "<answer>  (B) </answer>", "(B)"),
    ("pixel-reasoner-v3", "It is blue.", None),  # no box, tag or label: pr-eval's extraction finds none
])
def test_ask_prints_the_answer_the_familys_rule_reads(name, turn, answer):
    from pr_eval.cli.ask import end_lines
    from pr_eval.engines.base import GenerationResult
    from pr_eval.loop.steps import start, step

    protocol = get_protocol(name)
    traj = start(samples({"q": None})[0], protocol)
    step(traj, GenerationResult(text=turn, prompt_tokens=5, output_tokens=5, stop="<|im_end|>"), protocol)
    expected = answer if answer is not None else "(none: no \\boxed{} answer)"
    assert f"final answer: {expected}" in end_lines(traj, 0.1)
