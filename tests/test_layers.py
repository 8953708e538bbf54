"""The package's imports run one way: no module imports one that imports it, and
a stage imports only lower stages, through their faces.

Every ``import`` of a ``mrs_jax`` module anywhere in a module (top level, inside
functions, under ``TYPE_CHECKING``) is an edge; the test fails on any cycle.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mrs_jax"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    graph = {name: _imports(path, modules) - {name} for name, path in paths.items()}
    # A package's __init__ re-exports its submodules: not a layer of its own.
    return {name: {m for m in deps if m != "mrs_jax"} for name, deps in graph.items()
            if name != "mrs_jax"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_in_the_package():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_check_sees_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert "mrs_jax.job._pipeline" in _graph()["mrs_jax.job._run"]


# The stages, lowest first: a module of one stage may import a lower stage, only
# through its face (``mrs_jax.<stage>``), never a module behind it.
STAGES = (
    "core", "data", "models", "training", "localization", "certification",
    "attacks", "rows", "job", "report", "commands", "configs",
)


def _stage_edges() -> list[tuple[str, str, str]]:
    """(importing module, imported module, stage of the importer) per edge."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = []
    for name, path in paths.items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in STAGES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                if node.module == "mrs_jax":
                    targets = [f"mrs_jax.{a.name}" for a in node.names]
                else:
                    targets = [node.module]
            else:
                continue
            edges += [(name, t, parts[1]) for t in targets if t.startswith("mrs_jax.")]
    return edges


def _stage_violations(edges) -> list[str]:
    bad = []
    for importer, target, stage in edges:
        other = target.split(".")[1]
        if other == stage or other not in STAGES:
            continue
        if STAGES.index(other) > STAGES.index(stage):
            bad.append(f"{importer} imports the higher stage {target}")
        elif target != f"mrs_jax.{other}":
            bad.append(f"{importer} imports {target}, behind the face of {other}")
    return bad


def test_stages_import_only_lower_stages_through_their_faces():
    edges = _stage_edges()
    assert len(edges) > 50
    assert _stage_violations(edges) == []


def test_the_stage_check_sees_an_upward_import_and_a_private_one():
    edges = [
        ("mrs_jax.certification._smoothing", "mrs_jax.job", "certification"),
        ("mrs_jax.job._run", "mrs_jax.certification._smoothing", "job"),
        ("mrs_jax.job._run", "mrs_jax.certification", "job"),
    ]
    assert len(_stage_violations(edges)) == 2


def test_every_stage_module_is_private_behind_a_face():
    for stage in STAGES[:-2]:
        folder = PACKAGE / stage
        assert (folder / "__init__.py").is_file(), stage
        for path in folder.glob("*.py"):
            assert path.name == "__init__.py" or path.name.startswith("_"), path
