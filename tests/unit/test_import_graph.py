"""The package's layers: no import cycles between modules, and no import from a lower layer to a higher one.

Imports inside functions count too: they only postpone a cycle or an upward dependency, they do not remove it.
"""

import ast
from pathlib import Path

import rosetta

ROOT = Path(rosetta.__file__).parent
# builds: users' images are built from the catalogue's requests and recorded in it (above catalog).
# processes: each long-running process's entry, started from one table; above all it starts, below the CLI.
LAYERS = ["core", "accounts", "computing", "registry", "catalog", "builds", "storage", "tasks", "gateway", "processes"]
TOP = {"api", "web", "cli"}  # the entry points: above everything, and independent of each other


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if "migrations" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _graph() -> dict[str, set[str]]:
    """Each module and the rosetta modules it imports (a package's name when the import names one of its attributes)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    targets.add(submodule if submodule in modules else target)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, without recursion)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
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
                        components.append(sorted(component))
    return components


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (parts[1] in LAYERS or parts[1] in TOP) else None


def _rank(layer: str) -> int:
    return len(LAYERS) if layer in TOP else LAYERS.index(layer)


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_no_module_imports_a_higher_layer_or_another_entry_point():
    wrong = []
    for module, targets in sorted(_graph().items()):
        for target in sorted(targets):
            mine, theirs = _layer(module), _layer(target)
            if mine and theirs and mine != theirs and _rank(theirs) >= _rank(mine):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_checks_find_a_cycle_and_an_upward_import():
    graph = {"rosetta.core.a": {"rosetta.tasks.b"}, "rosetta.tasks.b": {"rosetta.core.a"}, "rosetta.core.c": set()}
    assert _cycles(graph) == [["rosetta.core.a", "rosetta.tasks.b"]]
    assert _rank("tasks") > _rank("core") and _rank("api") == _rank("cli")
