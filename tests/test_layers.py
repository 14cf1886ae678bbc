"""The package's layering (docs/ARCHITECTURE.md, "Layers"), read from the source with ast: every import, at module or
function level, goes to the same layer or a lower one, no import circle exists, and no function or module outgrows
its limit."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "seqimpute"

# Lowest first. A module belongs to the first layer whose prefix names it (a package name covers its modules).
LAYERS = [
    ("leaves", ["seqimpute", "seqimpute.errors", "seqimpute.files", "seqimpute.numerics", "seqimpute.precision",
                "seqimpute.threads", "seqimpute.metrics", "seqimpute.plots", "seqimpute.reporting"]),
    ("nn", ["seqimpute.nn"]),
    ("data", ["seqimpute.data"]),
    ("models", ["seqimpute.models"]),
    ("services", ["seqimpute.loop", "seqimpute.optim", "seqimpute.evaluate", "seqimpute.sampling", "seqimpute.runs",
                  "seqimpute.distributed", "seqimpute.bench", "seqimpute.pretrained"]),
    ("trainers", ["seqimpute.train", "seqimpute.finetune", "seqimpute.tabular"]),
    ("jobs", ["seqimpute.experiments", "seqimpute.demo", "seqimpute.reporting.docs"]),
    ("interface", ["seqimpute.commands", "seqimpute.cli", "seqimpute.__main__"]),
]
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500


def modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def layer(name: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for pre in prefixes:
            if (name == pre or name.startswith(pre + ".")) and (best is None or len(pre) > len(best[1])):
                best = (i, pre)
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS and docs/ARCHITECTURE.md"
    return best[0]


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The seqimpute modules ``name`` imports anywhere in its source (a name imported from a package counts as
    its submodule when there is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_import_goes_to_the_same_layer_or_below():
    upward = [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
              for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert not upward, "imports that go up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_circle():
    g, state, circles = graph(), {}, []

    def visit(v, path):
        state[v] = "open"
        for w in sorted(g[v]):
            if state.get(w) == "open":
                circles.append(path[path.index(w):] + [w])
            elif w not in state:
                visit(w, path + [w])
        state[v] = "done"

    for v in sorted(g):
        if v not in state:
            visit(v, [v])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_checks_see_function_level_imports_and_circles(tmp_path):
    """The reader is not blind: a function-level import is an edge, and a circle through one is found."""
    (tmp_path / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "b.py").write_text("from .a import f\n")
    known = {"pkg.a": tmp_path / "a.py", "pkg.b": tmp_path / "b.py"}
    assert imports("pkg.a", known["pkg.a"], known) == {"pkg.b"}
    assert imports("pkg.b", known["pkg.b"], known) == {"pkg.a"}
    assert layer("seqimpute.models.vae") < layer("seqimpute.evaluate") < layer("seqimpute.train")


def test_functions_and_modules_stay_short():
    long_functions, long_modules = [], []
    for name, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {n} lines")
    assert not long_functions and not long_modules, "\n".join(long_functions + long_modules)
