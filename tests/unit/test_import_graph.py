"""The import graph stays acyclic and layered (issue 12: "an acyclic CLI", "no worker imports another").

Built with grimp from the source (every import statement, including those inside functions), so a
cycle or a cross-worker import fails here before anyone has to find it by reading.
"""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("jetexec", "bus", "core", "schemas", "workers", "bench")

# No worker imports another: what two workers share lives in core/, schemas/ or bus/.
KNOWN_CROSS_WORKER: set[tuple[str, str]] = set()


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _edges(graph) -> dict[str, set[str]]:
    return {m: {i for i in graph.find_modules_directly_imported_by(m) if i.split(".")[0] in PACKAGES} for m in graph.modules}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
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
                    found.append(sorted(component))
    return found


def test_there_is_no_import_cycle(graph):
    cycles = _cycles(_edges(graph))
    assert cycles == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _worker_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "workers" and len(parts) > 2 else None  # workers.<name>.<module>


def test_no_worker_imports_another_worker(graph):
    crossing = set()
    for module in graph.modules:
        mine = _worker_of(module)
        if mine is None:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            theirs = _worker_of(imported) if imported.startswith("workers.") else None
            if theirs is not None and theirs != mine:
                crossing.add((module, imported))
    new = sorted(crossing - KNOWN_CROSS_WORKER)
    assert new == [], "workers/X imports workers/Y (shared things go to core/ or schemas/):\n" + "\n".join(f"{a} -> {b}" for a, b in new)


def test_core_and_schemas_import_no_bus_nats_or_workers():
    graph = grimp.build_graph(*PACKAGES, "nats", cache_dir=None)
    for module in sorted(m for m in graph.modules if m.split(".")[0] in ("core", "schemas")):
        bad = sorted(i for i in graph.find_modules_directly_imported_by(module) if i.split(".")[0] in ("bus", "nats", "workers", "jetexec"))
        assert bad == [], f"{module} imports {bad}: core/ and schemas/ stay pure"


def test_the_cli_modules_do_not_import_the_cli_package(graph):
    """Each command module shares only jetexec.cli.common; none reaches back for the assembled app."""
    for module in sorted(m for m in graph.modules if m.startswith("jetexec.cli.") and m not in ("jetexec.cli.app", "jetexec.cli.__main__")):
        imported = graph.find_modules_directly_imported_by(module)
        assert not {"jetexec.cli", "jetexec.cli.app"} & imported, f"{module} imports the CLI app"
    for module in sorted(m for m in graph.modules if m.startswith("jetexec.") and not m.startswith("jetexec.cli")):
        assert not any(i == "jetexec.cli" or i.startswith("jetexec.cli.") for i in graph.find_modules_directly_imported_by(module)), f"{module} imports the CLI"
