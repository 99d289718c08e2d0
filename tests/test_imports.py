"""The project's import graph: no cycles, no service importing another, no kernel importing upwards.

Every `import` and `from … import` of every module under the project's packages counts, wherever it
is written: at the top, inside a function (a lazy import) or under `if TYPE_CHECKING:`. An edge
goes from the importing module to the module it names (`from devtools import devdb` names the module
`devtools.devdb`; `from shared.auth import require` names `shared.auth`) and to that module's parent
packages, which Python imports first (except the importer's own, already imported).

The layers, bottom up: `shared` (the kernel), then each of `services.registry`,
`services.eligibility` and `services.vouchers` (which import the kernel and never each other), then
`devtools` (developer tooling: it may import anything; nothing of the services or the kernel
imports it).

KNOWN_CYCLE_EDGES and KNOWN_LAYER_VIOLATIONS list known violations (none today). They can only
shrink: an entry that no longer occurs (the import is gone, or no longer closes a cycle) fails the
test until it is removed from the list.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "services", "devtools")

#: Imports that close a cycle today, each to be removed by the change that removes it (none left).
KNOWN_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset()

#: Imports across layers today, each to be removed by the change that removes it (none left).
KNOWN_LAYER_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


@cache
def modules() -> Mapping[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _project_module(name: str) -> str | None:
    """The project module `name` is, or is inside of (`shared.auth.require` → `shared.auth`)."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _named_modules(module: str, tree: ast.Module, is_package: bool) -> Iterator[str]:
    known = modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if target := _project_module(alias.name):
                    yield target
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                target = submodule if submodule in known else _project_module(source)
                if target:
                    yield target


def _parents(module: str) -> Iterator[str]:
    parts = module.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


@cache
def graph() -> Mapping[str, frozenset[str]]:
    edges: dict[str, frozenset[str]] = {}
    known = modules()
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own_parents = set(_parents(module))
        targets: set[str] = set()
        for target in _named_modules(module, tree, path.name == "__init__.py"):
            targets.add(target)
            targets.update(p for p in _parents(target) if p in known and p not in own_parents)
        targets.discard(module)
        edges[module] = frozenset(targets)
    return edges


def _reaches(edges: Mapping[str, frozenset[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def _cycles(edges: Mapping[str, frozenset[str]]) -> list[list[str]]:
    """One cycle (as a path of modules) through each strongly connected component that has one."""
    cycles: list[list[str]] = []
    done: set[str] = set()
    for start in sorted(edges):
        if start in done or not _reaches(edges, start, start):
            continue
        # shortest path back to start, breadth first
        previous: dict[str, str] = {}
        frontier, found = [start], False
        while frontier and not found:
            following = []
            for node in frontier:
                for nxt in sorted(edges.get(node, ())):
                    if nxt == start:
                        previous[start], found = node, True
                        break
                    if nxt not in previous:
                        previous[nxt] = node
                        following.append(nxt)
                if found:
                    break
            frontier = following
        path, node = [start], previous[start]
        while node != start:
            path.append(node)
            node = previous[node]
        path.append(start)
        path.reverse()
        cycles.append(path)
        done.update(m for m in edges if _reaches(edges, start, m) and _reaches(edges, m, start))
    return cycles


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return f"services.{parts[1]}"
    return parts[0]


def _allowed(importer: str, imported: str) -> bool:
    source, target = _layer(importer), _layer(imported)
    if source == target or target == "shared" or source == "devtools":
        return True
    return target == "services" or source == "services"  # the namespace package `services` itself


def test_the_project_modules_are_found() -> None:
    assert {"shared.app", "services.registry.app", "services.eligibility.app", "services.vouchers.app"} <= set(
        modules()
    )


def test_no_import_cycles() -> None:
    edges = {module: targets - {t for s, t in KNOWN_CYCLE_EDGES if s == module} for module, targets in graph().items()}
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(cycle) for cycle in cycles)


def test_the_known_cycles_only_shrink() -> None:
    edges = graph()
    stale = sorted(
        (importer, imported)
        for importer, imported in KNOWN_CYCLE_EDGES
        if imported not in edges.get(importer, ()) or not _reaches(edges, imported, importer)
    )
    assert not stale, f"no longer a cycle: remove {stale} from KNOWN_CYCLE_EDGES"


def test_no_import_across_layers() -> None:
    wrong = sorted(
        (importer, imported)
        for importer, targets in graph().items()
        for imported in targets
        if not _allowed(importer, imported) and (importer, imported) not in KNOWN_LAYER_VIOLATIONS
    )
    assert not wrong, (
        "a service imports another service, or the kernel (shared) or a service imports upwards:\n"
        + "\n".join(f"{importer} → {imported}" for importer, imported in wrong)
    )


def test_the_known_layer_violations_only_shrink() -> None:
    edges = graph()
    stale = sorted((s, t) for s, t in KNOWN_LAYER_VIOLATIONS if t not in edges.get(s, ()))
    assert not stale, f"no longer imported: remove {stale} from KNOWN_LAYER_VIOLATIONS"


def test_the_check_sees_lazy_imports_cycles_and_layers() -> None:
    """The checker itself, on a small made-up graph."""
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert _cycles(edges) == [["a", "b", "c", "a"]]
    assert _cycles({"a": frozenset({"b"}), "b": frozenset()}) == []
    tree = ast.parse("def f():\n    from shared import errors\n")
    assert list(_named_modules("shared.auth", tree, is_package=False)) == ["shared.errors"]
    assert not _allowed("shared.auth", "services.registry.identity")
    assert not _allowed("services.vouchers.peers", "services.eligibility.schemas")
    assert not _allowed("services.vouchers.app", "devtools.devauth")
    assert _allowed("devtools.devrun", "services.registry.identity")
    assert _allowed("services.vouchers.app", "shared.app")
