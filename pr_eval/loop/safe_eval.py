"""What Python's `eval()` makes of a model's text, without running it.

DeepEyes and Mini-o3 read a tool call by calling `eval()` on the model's text (DeepEyes
eval_vstar.py on the `<tool_call>` body, Mini-o3's rollout on the `bbox_2d` value). Their
protocols' behaviour is what `eval` returns there: Python literals that JSON is not (single
quotes, tuples), arithmetic (`[5*4, 20, 300+100, 400]`), and for JSON's `true`/`null` the
NameError that ends the sample. pr-eval never evaluates model output: `safe_eval` walks the
syntax tree and reproduces `eval` for

- literals: numbers, strings, bytes, True/False/None, `...`; lists, tuples, dicts and sets of them;
- arithmetic on them: unary `+ - ~`, binary `+ - * / // % ** << >> & | ^ @`, done by Python's own
  operators on the values already read, so results and errors (ZeroDivisionError, TypeError,
  OverflowError) are `eval`'s, message included;
- a name that would not resolve: `NameError: name 'true' is not defined`, as `eval` raises it;
- text that is not an expression: the SyntaxError `eval` raises (`invalid syntax (<string>, line 3)`).

Anything else, which `eval` would run, is refused (`Refused`, never run): calls, attributes,
subscripts, comprehensions, lambdas, comparisons, names that would resolve (Python's builtins, and
whatever names the caller says the peer's module defines), and results too large to build (a
power, shift or repetition past the bounds below; `eval` would spend minutes or gigabytes). A
protocol records a refused call as an error of its own kind and lists the difference.
"""

from __future__ import annotations

import ast
import builtins
import operator
from typing import Any

MAX_RESULT_BITS = 100_000      # an int from **, << or * (eval would build it, at any size)
MAX_SEQUENCE_ITEMS = 1_000_000  # a str, bytes, list or tuple from * or +
BUILTIN_NAMES = frozenset(dir(builtins))

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
           ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitAnd: operator.and_,
           ast.BitOr: operator.or_, ast.BitXor: operator.xor, ast.MatMult: operator.matmul}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Invert: operator.invert}


class Refused(Exception):
    """The text is an expression `eval` would run (a call, a name that resolves, ...) or one too
    large to build: pr-eval does not; the message says what it was."""


def safe_eval(text: str, defined: frozenset[str] = frozenset()) -> Any:
    """What `eval(text)` returns, or the exception it raises, for literal and arithmetic
    expressions (module doc); Refused for the rest. `defined`: names the peer's module defines
    (they would resolve there, so they are refused too, as builtins are)."""
    source = text.lstrip(" \t")  # as eval strips its string input
    compile(source, "<string>", "eval")  # compiled, never run: eval's own SyntaxError, message and all
    return _value(ast.parse(source, "<string>", "eval").body, BUILTIN_NAMES | defined)


def _value(node: ast.AST, resolves: frozenset[str]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        if any(isinstance(item, ast.Starred) for item in node.elts):
            raise Refused("an unpacked (*) item")
        items = [_value(item, resolves) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items) if isinstance(node, ast.Tuple) else set(items)
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise Refused("an unpacked (**) mapping")
        pairs = [(_value(k, resolves), _value(v, resolves)) for k, v in zip(node.keys, node.values)]
        return dict(pairs)  # eval: later keys win, an unhashable key is TypeError
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand, resolves))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left, resolves), _value(node.right, resolves)
        _check_size(node.op, left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Name):
        if node.id in resolves:
            raise Refused(f"the name {node.id!r}, which eval would resolve")
        raise NameError(f"name {node.id!r} is not defined")
    raise Refused(f"a {type(node).__name__} expression, which eval would run")


def _check_size(op: ast.operator, left: Any, right: Any) -> None:
    """Refused where Python would build a result past the bounds (the operation is not done)."""
    ints = isinstance(left, int) and isinstance(right, int)
    if isinstance(op, ast.Pow) and ints and right > 0 and abs(left) > 1:
        if right * max(abs(left).bit_length(), 1) > MAX_RESULT_BITS:
            raise Refused(f"a power of about {right * abs(left).bit_length():,} bits")
    if isinstance(op, ast.LShift) and ints and right > 0 and left and left.bit_length() + right > MAX_RESULT_BITS:
        raise Refused(f"a shift to about {left.bit_length() + right:,} bits")
    if isinstance(op, ast.Mult) and ints and left.bit_length() + right.bit_length() > MAX_RESULT_BITS:
        raise Refused(f"a product of about {left.bit_length() + right.bit_length():,} bits")
    if isinstance(op, ast.Mult):
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, (str, bytes, list, tuple)) and isinstance(count, int) \
                    and len(sequence) * max(count, 0) > MAX_SEQUENCE_ITEMS:
                raise Refused(f"a repetition to {len(sequence) * count:,} items")
    if isinstance(op, ast.Mod) and isinstance(left, (str, bytes)):
        raise Refused("%-formatting, which eval would run")
