"""The table imputer's package (seqimpute/tabular): no import circle through it, function-level imports included,
and no function over 100 lines (read from the source with ast)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "seqimpute"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The seqimpute modules ``path`` imports anywhere in its body (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("seqimpute")}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
            if mod.startswith("seqimpute"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}  # `from . import saved` names a module
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in imports(p) if i in modules and i != m} for m, p in modules.items()}


def reaches(g: dict, start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m == goal:
            return True
        if m not in seen:
            seen.add(m)
            todo += g.get(m, ())
    return False


def test_no_import_circle_passes_through_the_tabular_package():
    g = graph()
    tabular = [m for m in g if m.startswith("seqimpute.tabular.")]
    assert {"seqimpute.tabular.imputer", "seqimpute.tabular.saved"} <= set(tabular)
    circles = [(m, d) for m in tabular for d in g[m] if reaches(g, d, m)]
    assert not circles, f"import circles through seqimpute.tabular: {circles}"


def test_the_circle_check_can_fail():
    g = {"a": {"b"}, "b": {"a"}}
    assert reaches(g, "b", "a") and not reaches({"a": {"b"}, "b": set()}, "b", "a")


def test_no_function_in_the_tabular_package_is_over_100_lines():
    long = []
    for path in (PACKAGE / "tabular").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 100:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
