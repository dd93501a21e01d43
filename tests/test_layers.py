"""The layers of docs/architecture.md, checked on the source: rlctl → agents, envs; agents and envs never
import each other (or the rest of rlctl); nothing imports rlctl.cli; no import cycles between modules.

Every import counts, also one inside a function: a deferred import still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repo's folders and the package names they install as (rlctl/agents and rlctl/envs link to them).
FOLDERS = {"rlctl": "rlctl", "agents": "rlctl.agents", "envs": "rlctl.envs"}


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder)
            if any(part in ("agents", "envs") for part in rel.parts[:-1]) and folder == "rlctl":
                continue  # the links: these files are read from the top-level folders
            parts = [package, *rel.with_suffix("").parts]
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


def _imports(name: str, path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute, as written or resolved from a relative import)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        for target in _imports(name, path):
            while target and target not in mods:  # `from pkg import name` where name is not a module
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):  # a package's own __init__
                edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycles_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_graph_sees_imports_across_the_links() -> None:
    graph = _graph()
    assert {"rlctl.agents.ppo", "rlctl.envs.make"} <= graph["rlctl.train.loop"] | graph["rlctl.train.learner"] \
        | graph["rlctl.evaluate"]
    assert "rlctl.envs.ids" in graph["rlctl.envs.make"]


def test_agents_and_envs_import_only_themselves() -> None:
    graph = _graph()
    for layer in ("rlctl.agents", "rlctl.envs"):
        for module, targets in graph.items():
            if module == layer or module.startswith(layer + "."):
                outside = {t for t in targets
                           if t.startswith("rlctl") and not (t == layer or t.startswith(layer + "."))}
                assert not outside, f"{module} imports {sorted(outside)}: {layer} may import only itself"


def test_nothing_imports_the_cli() -> None:
    graph = _graph()
    users = sorted(m for m, targets in graph.items() if not m.startswith("rlctl.cli")
                   and any(t == "rlctl.cli" or t.startswith("rlctl.cli.") for t in targets))
    assert users == []


def test_no_module_imports_the_bare_top_level_names() -> None:
    """``agents`` and ``envs`` are installed as rlctl.agents / rlctl.envs; a bare import would find a user's
    own package of that name (or nothing, once installed)."""
    bare = {m: sorted(t for t in _imports(m, p) if t.split(".")[0] in ("agents", "envs"))
            for m, p in _modules().items()}
    assert {m: t for m, t in bare.items() if t} == {}
