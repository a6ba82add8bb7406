"""The package's layering, read from its import graph (every import statement, function-level ones too).

The core (``data``, ``samplers``, ``models``, ``evaluation``, ``train`` and the small modules they share)
imports neither Ray nor MLflow and nothing from the layers that wrap it (``distributed``, ``tune``,
``tracking``, ``metrics``, ``report``, ``bench``, ``run``, ``cli``); models import nothing from samplers;
no two modules import each other, directly or through others (imports for type annotations only, under
``if TYPE_CHECKING:``, do not count).
"""

import ast
from pathlib import Path

import pytest

import raysearch

ROOT = Path(raysearch.__file__).parent
CORE = ("data", "samplers", "models", "evaluation", "train", "batch", "scorer", "losses", "config", "errors",
        "registry", "rng", "communities", "version")
WRAPPERS = ("distributed", "tune", "tracking", "metrics", "report", "bench", "run", "cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (annotations only, never imported)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from runtime_nodes(node)


def imports_of(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (``from a import b`` counts a and a.b)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules or not m.startswith("raysearch")}
            for name, path in modules.items()}


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def violations(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for source, targets in sorted(edges.items()):
        src = layer(source)
        for target in sorted(targets):
            top = target.split(".")[0]
            if src in CORE and top in ("ray", "mlflow"):
                found.append(f"{source} imports {target} (the core imports neither Ray nor MLflow)")
            if top != "raysearch":
                continue
            dst = layer(target)
            if src in CORE and dst in WRAPPERS:
                found.append(f"{source} imports {target} (a core module imports a layer above it)")
            if src == "models" and dst == "samplers":
                found.append(f"{source} imports {target} (models import nothing from samplers)")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Cycles between modules (package __init__ files re-exporting their own modules excepted)."""
    def deps(m: str) -> set[str]:
        return {t for t in edges.get(m, ()) if t in edges and t != m and not m.startswith(f"{t}.")
                and not (edges.get(t) is not None and t.startswith(f"{m}."))}

    found, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(deps(m)):
            if state.get(t) == 1:
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
    return found


def test_the_core_imports_no_wrapper_and_neither_ray_nor_mlflow():
    assert violations(graph()) == []


def test_no_import_cycles_between_modules():
    assert cycles(graph()) == []


@pytest.mark.parametrize("source,target", [
    ("raysearch.train.pipeline", "raysearch.distributed.table_actors"),
    ("raysearch.train.trainer", "ray.util.metrics"),
    ("raysearch.models.base", "raysearch.samplers.base"),
])
def test_the_rules_catch_a_violation(source, target):
    edges = graph()
    edges[source] = {*edges[source], target}
    assert any(line.startswith(f"{source} imports {target}") for line in violations(edges))


def test_the_cycle_check_catches_a_cycle():
    edges = graph()
    edges["raysearch.data.loader"] = {*edges["raysearch.data.loader"], "raysearch.data.synthetic"}
    assert any("raysearch.data.loader" in c and "raysearch.data.synthetic" in c for c in cycles(edges))
