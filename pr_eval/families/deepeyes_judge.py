"""DeepEyes' answer rule and judge (Visual-Agent/DeepEyes eval/judge_result.py, a7a337a and cc3ff4d).

The rule reads the predicted answer (`eval_vstar.py:265-268`: the first `<answer>` of the last
response, else that whole response), cuts it at `\\boxed{...}`, then decides by three checks on
the shown letter and the shown "X. text" (judge_result.py:140-159 at a7a337a, where the letter is
always "A"; the same lines with `answer_choice` at cc3ff4d). What they leave undecided goes to
Qwen2.5-72B-Instruct with `get_prompt` (l.47-121) and its reply is read as l.170-190 read it.
The prompt strings are data, byte for byte (the misspelt "Judement"; the template's "\\n\\n" is an
escape in the released triple-quoted string, so it ends in three newlines).
"""

from __future__ import annotations

from .base import Verdict

JUDGE_SYSTEM = "You are a helpful assistant."

# get_chat_template() (l.47-53): starts with a newline and ends with three ("\\n\\n" there is an escape).
JUDGE_TEMPLATE = (
    "\nBelow are two answers to a question. Question is [Question], [Standard Answer] is the standard answer "
    "to the question, and [Model_answer] is the answer extracted from a model's output to this question.  "
    "Determine whether these two answers are consistent.\n"
    "Note that [Model Answer] is consistent with [Standard Answer] whenever they are essentially the same. "
    "If the meaning is expressed in the same way, it is considered consistent, for example, 'pink' and "
    "'it is pink'.\n"
    "If they are consistent, Judement is 1; if they are different, Judement is 0. Just output Judement and "
    "don't output anything else.\n\n\n"
)

# get_gpt4_score_ICE(): (question, standard answer, model answer, judgement)
_EXAMPLES = (
    ("Is the countertop tan or blue?", "A. The countertop is tan.", "tan", "1"),
    ("On which side of the picture is the barrier?", "A. The barrier is on the left side of the picture.", "A", "1"),
    ("Is the kite brown and large?", "A. Yes, the kite is brown and large.", "Yes", "1"),
    ("Are the spots on a giraffe?", "A. No, the spots are on a banana.", "no", "1"),
    ("Who is wearing pants?", "A. The boy is wearing pants.", "C. The girl in the picture is wearing pants.", "0"),
    ("Is the man phone both blue and closed?", "A. Yes, the man phone is both blue and closed.", "No.", "0"),
    ("What color is the towel in the center of the picture?",
     "A. The towel in the center of the picture is blue.", "The towel in the center of the picture is pink.", "0"),
)
JUDGE_EXAMPLES = tuple(f"\n[Question]: {q}\n[Standard Answer]: {a}\n[Model_answer] : {m}\nJudgement: {j}\n"
                       for q, a, m, j in _EXAMPLES)
JUDGE_QUERY = "\n[Question]: {question}\n[Standard Answer]: {ground_truth}\n[Model_answer] : {predict_str}\nJudgement:"


def judge_prompt(predict_str: str, ground_truth: str, question: str) -> str:
    """get_prompt (l.107-121): the template, each example followed by two newlines, the query."""
    demo = JUDGE_TEMPLATE + "".join(example + "\n\n" for example in JUDGE_EXAMPLES)
    return demo + JUDGE_QUERY.format(question=question, ground_truth=ground_truth, predict_str=predict_str)


def judge_messages(predict_str: str, ground_truth: str, question: str) -> list[dict]:
    """The chat request of l.160-169 (temperature 0, no max_tokens: the JudgePrompt's settings)."""
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": judge_prompt(predict_str, ground_truth, question)}]


def judge_score(reply: str) -> float:
    """l.170-190: the stripped reply; after its last "Judgement:" any "1" scores 1 (so "10" does),
    else 0; without "Judgement:" only exactly "1" scores 1. Never unreadable: a format error is 0."""
    text = reply.strip()
    if "Judgement:" in text:
        return 1.0 if "1" in text.split("Judgement:")[-1].strip() else 0.0
    return 1.0 if text == "1" else 0.0


def extract(response: str) -> str:
    """eval_vstar.py:265-268: the first <answer>...</answer> of the response when it holds both
    tags (split on the first "<answer>", then on the first "</answer>" after it), stripped; else
    the whole response."""
    if "</answer>" in response and "<answer>" in response:
        return response.split("<answer>")[1].split("</answer>")[0].strip()
    return response


def rule(pred: str, choice: str, answer: str) -> Verdict:
    """judge_result.py:142-159 with `choice` the shown letter and `answer` "X. text" (for a question
    without options both are the gold itself). `\\boxed` without "{" makes the released script raise
    IndexError (its whole judge run stops): scored 0 here (a listed difference)."""
    if "\\boxed" in pred:
        parts = pred.split("\\boxed{")
        if len(parts) < 2:
            return Verdict(0.0, pred)
        pred = parts[1].split("}")[0]
    if len(pred) == 1:
        return Verdict(1.0 if pred == choice else 0.0, pred)
    if len(pred) == 2 and "." in pred:
        return Verdict(1.0 if choice in pred else 0.0, pred)
    if answer in pred:
        return Verdict(1.0, pred)
    return Verdict(None, pred)
