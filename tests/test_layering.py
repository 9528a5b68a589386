"""The layering contract: imports follow the pipeline, and no import cycle exists.

Every module of ``segforge/`` belongs to a layer (its top-level package or module, see
:data:`LAYERS`, lowest first; docs/architecture.md "Layers" shows the same order). A module may
import from its own layer and from lower ones, never from a later stage of the pipeline. Imports
inside functions count too: a lazy import is still a dependency. Read from the source with
``ast`` (nothing is imported), so the test also guards files no other test imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import segforge

PACKAGE = Path(segforge.__file__).parent

# lowest first; names on one line share a layer (they may import each other, but not in a cycle)
LAYERS: list[tuple[str, ...]] = [
    ("errors", "registry", "resources", "devices", "workers"),
    ("paths",),
    ("io", "execution"),
    ("synthetic",),
    ("fingerprint",),
    ("networks",),
    ("planning",),
    ("preprocessing",),
    ("data",),
    ("cascade",),  # the cascade's pure pieces: heatmaps, curriculum, crop, grids, locate, locator data
    ("training",),
    ("inference",),
    ("evaluation",),
    ("workflows",),
    ("demo",),
    ("cli",),
    ("__init__",),  # the package's own facade (segforge.predict)
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every segforge import in the file, at any depth."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "segforge"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "segforge":
                continue
            for alias in node.names:  # "from segforge import paths" imports the module segforge.paths
                if base == "segforge" and alias.name == "__version__":
                    continue  # package metadata, not the facade's API
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if is_module(sub) else base))
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph() -> dict[str, list[tuple[int, str]]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    unknown = sorted({layer_of(m) for m in import_graph()} - set(RANK))
    assert not unknown, f"add these to LAYERS in tests/test_layering.py and docs/architecture.md: {unknown}"


def test_no_module_imports_a_later_stage():
    wrong = []
    for module, imports in import_graph().items():
        for line, target in imports:
            mine, theirs = layer_of(module), layer_of(target)
            if RANK.get(theirs, -1) > RANK.get(mine, len(LAYERS)):
                wrong.append(f"{module} (line {line}, layer {mine}) imports {target} (later layer {theirs})")
    assert not wrong, "imports against the pipeline's direction:\n" + "\n".join(wrong)


def test_no_import_cycle():
    """No cycle among modules, nor among the layers of one rank (edges to a package's own
    ``__init__`` from inside it are left out: that is how a package re-exports its modules)."""
    graph = import_graph()
    edges = {m: sorted({t for _, t in imports if t != m and not (m.startswith(t + ".") and t in graph)})
             for m, imports in graph.items()}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
    layer_edges: dict[str, set[str]] = {}
    for m, targets in edges.items():
        for t in targets:
            if layer_of(m) != layer_of(t):
                layer_edges.setdefault(layer_of(m), set()).add(layer_of(t))
    cycle = find_cycle({k: sorted(v) for k, v in layer_edges.items()})
    assert cycle is None, "cycle between layers: " + " -> ".join(cycle)


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` as a list of nodes (first repeated last), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The helpers find a cycle and resolve ``from segforge import paths`` to the module."""
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    targets = [t for _, t in imports_of(PACKAGE / "demo.py")]
    assert "segforge.paths" in targets and "segforge.workflows.train" in targets
    assert layer_of("segforge.training.trainer") == "training" and layer_of("segforge") == "__init__"


@pytest.mark.parametrize("layer", ["cascade"])
def test_the_cascade_keeps_only_pure_pieces(layer):
    """No trainer and no predictor under cascade/: they live in training/ and inference/."""
    names = sorted(p.stem for p in (PACKAGE / layer).glob("*.py"))
    assert not [n for n in names if "trainer" in n or "predictor" in n or n == "training_steps"], names
