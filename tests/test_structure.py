"""The shape of the house: no import circle among pr_eval's modules (imports inside functions
included), no module past the size a reader can hold, a package root that stays a hallway (the
rooms are its subpackages, one per step of the flow), and each room's public face."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where each installed package's source lives (pyproject's package-dir).
PACKAGES = {"pr_eval": ROOT / "pr_eval"}
MAX_LINES = 420
# The modules at the package root: what every room shares (the record, the settings, the errors).
MAX_ROOT_MODULES = 12
# The rooms, in the order of the flow (pr_eval/__init__.py draws it).
ROOMS = ("cli", "data", "benchmarks", "families", "loop", "engines", "lmms", "run", "scoring", "judge",
         "report", "compare", "leaderboard", "probe")


def modules() -> dict[str, Path]:
    """Every module of pr_eval, by its dotted name."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The pr_eval modules `name` imports anywhere in its file (functions included)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import pr_eval.x.y` names pr_eval.x.y's module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph` (Tarjan's strongly connected components of two or more)."""
    index, low, on_stack, stack, result, counter = {}, {}, set(), [], [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_the_graph_is_read_from_the_code():
    graph = import_graph()
    assert "pr_eval.benchmarks.vstar" in graph["pr_eval.benchmarks"]          # from . import vstar
    assert "pr_eval.benchmarks.registry" in graph["pr_eval.benchmarks.vstar"]  # from .registry import ...
    assert "pr_eval.data.load" in graph["pr_eval.lmms.task"]
    assert "pr_eval.loop.steps" in graph["pr_eval.lmms.adapter"]   # from ..loop.steps import ...


def test_no_import_circles_among_pr_eval_modules():
    found = cycles(import_graph())
    assert not found, "import circles (imports inside functions count): " + "; ".join(" <-> ".join(c) for c in found)


def test_the_circle_finder_finds_circles(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    # ... and an import inside a function is read like any other
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "__init__.py").write_text("")
    (tmp_path / "p" / "x.py").write_text("from . import y\n")
    (tmp_path / "p" / "y.py").write_text("def f():\n    from .x import g\n")
    known = {"p", "p.x", "p.y"}
    graph = {"p.x": imports_of("p.x", tmp_path / "p" / "x.py", known),
             "p.y": imports_of("p.y", tmp_path / "p" / "y.py", known)}
    assert cycles(graph) == [["p.x", "p.y"]]


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_too_long(name):
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it along its seams (at most {MAX_LINES})"


def test_the_package_root_is_a_hallway():
    root = sorted(p.name for p in (ROOT / "pr_eval").glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at pr_eval/'s root ({', '.join(root)}); " \
        f"put a module in the room of its step (at most {MAX_ROOT_MODULES} at the root)"
    rooms = sorted(p.parent.name for p in (ROOT / "pr_eval").glob("*/__init__.py"))
    assert rooms == sorted(ROOMS), "a room was added or removed: name it in ROOMS and in pr_eval/__init__.py"
    hallway = (ROOT / "pr_eval" / "__init__.py").read_text(encoding="utf-8")
    assert all(f"{room}/" in hallway for room in ROOMS), "pr_eval/__init__.py's map names every room"


def test_every_room_is_installed():
    """pyproject lists its packages one by one: a room left out works in an editable install and
    is missing from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert {f"pr_eval.{room}" for room in ROOMS} <= listed


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_says_what_it_holds(room):
    """Each room's docstring lists its modules, and its public face's names exist."""
    import importlib

    package = importlib.import_module(f"pr_eval.{room}")
    folder = ROOT / "pr_eval" / room
    doc = package.__doc__ or ""
    if room in ("benchmarks", "families"):  # registries: one module per benchmark / family
        return
    missing = [p.name for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__") and p.name not in doc]
    assert not missing, f"pr_eval/{room}/__init__.py does not list {', '.join(missing)}"
    for name in getattr(package, "__all__", []):
        assert getattr(package, name) is not None, f"pr_eval.{room}.{name}"
    with pytest.raises(AttributeError):
        getattr(package, "no_such_name")
