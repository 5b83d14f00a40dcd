"""Canned engines for tests of what comes after generation (submissions, tables, leaderboards,
re-scoring): each answers from a fixed list of replies in turn, with no model, so a whole run of
the bundled samples takes seconds. The engine itself is not under test here; the real one is in
test_loop_engine.py and the tests that use conftest's shared vLLM engine."""

from __future__ import annotations

from pr_eval.engines.base import GenerationResult


class Canned:
    """Answers the n-th request (n = 1, 2, ... counted from `start`) with replies[n % len(replies)]."""

    def __init__(self, *replies: str, start: int = 0, name: str = "canned"):
        self.replies, self.calls, self.name = replies, start, name

    def generate(self, requests, decoding):
        results = []
        for _ in requests:
            self.calls += 1
            results.append(GenerationResult(text=self.replies[self.calls % len(self.replies)], prompt_tokens=10,
                                            output_tokens=4, finish_reason="stop", stop="<|im_end|>"))
        return results

    def close(self):
        pass


def boxed(*letters: str, start: int = 0) -> Canned:
    """Replies \\boxed{A}, \\boxed{B}, ... in turn (one letter: always that letter)."""
    return Canned(*("\\boxed{%s}" % x for x in letters), start=start, name="boxed-" + "".join(letters))
