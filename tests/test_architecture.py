"""Holds the import graph of DESIGN.md: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("oneflow", "audit", "accounts", "providers", "billing", "gateway", "routing")

# Component -> the project components it may import (besides itself).
ALLOWED = {
    "oneflow.lib": set(),
    "oneflow": {"oneflow.lib"},
    "audit": {"oneflow.lib"},
    "accounts": {"audit", "oneflow.lib"},
    "providers": {"audit", "oneflow.lib"},
    "billing": {"audit", "accounts", "oneflow.lib"},
    # The hot path (/v1): mounted by oneflow.asgi through settings, never imported.
    "gateway": {"accounts", "providers", "billing", "oneflow.lib"},
    # The Django side of routing: admin pages, playground, probes.
    "routing": {"audit", "accounts", "providers", "billing", "gateway", "oneflow.lib"},
}


def component(module: str) -> str | None:
    if module == "oneflow.lib" or module.startswith("oneflow.lib."):
        return "oneflow.lib"
    top = module.split(".", maxsplit=1)[0]
    return top if top in PROJECT else None


def source_files() -> list[Path]:
    return [path for top in PROJECT for path in (ROOT / top).rglob("*.py") if "migrations" not in path.parts]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST) -> list[tuple[str, ast.stmt]]:
    found: list[tuple[str, ast.stmt]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node))
    return found


def test_apps_import_only_what_the_design_allows() -> None:
    violations = []
    for path in source_files():
        source = component(module_name(path))
        assert source is not None
        for target_module, node in imports(ast.parse(path.read_text())):
            target = component(target_module)
            if target is None or target == source:
                continue
            if target not in ALLOWED[source]:
                violations.append(f"{path.relative_to(ROOT)}:{node.lineno} {source} imports {target_module}")
    assert violations == []


def test_nothing_imports_routing() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in source_files()
        if component(module_name(path)) != "routing"
        for target, node in imports(ast.parse(path.read_text()))
        if component(target) == "routing"
    ]
    assert offenders == []


def test_no_function_level_imports_hide_a_dependency() -> None:
    offenders = []
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                offenders += [
                    f"{path.relative_to(ROOT)}:{inner.lineno}"
                    for inner in ast.walk(node)
                    if isinstance(inner, ast.Import | ast.ImportFrom)
                ]
    assert offenders == []


def test_the_checker_sees_a_forbidden_import() -> None:
    tree = ast.parse("from routing.api import ModelListApi\nimport billing.models\n")
    targets = {component(name) for name, _ in imports(tree)}
    assert targets == {"routing", "billing"}
    assert "billing" not in ALLOWED["accounts"]


# --- The import graph: no circles, and a hot path free of Django-side code ------------------

# Modules the hot path must never load, directly or through anything it imports: the
# admin and its reports, views and forms, REST serializers, jobs, the routing app.
HOT_PATH_FORBIDDEN = ("admin", "admin_overview", "views", "forms", "serializers", "tasks", "urls")


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for path in source_files()}


def resolved(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import loads: ``from a.b import c`` loads a.b.c when c
    is a module, else a.b (an attribute of it)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, type-only imports included: a
    circle closed through TYPE_CHECKING is still a circle in the design."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            edges |= {target for name in names if (target := resolved(name, modules)) and target != module}
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        loaded = {parent for edge in edges for parent in parents(edge) if parent in modules}
        # ... unless the importer is inside that package: it is being initialised already.
        graph[module] = edges | (loaded - set(parents(module)))
    return graph


def parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` loads -> the module that imports it (for the message)."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop()
        for target in graph.get(node, ()):
            if target not in seen and target != start:
                seen[target] = node
                todo.append(target)
    return seen


def hot_path_offences(graph: dict[str, set[str]]) -> list[str]:
    offences = []
    for module in sorted(graph):
        if component(module) != "gateway":
            continue
        for target, via in sorted(reachable(graph, module).items()):
            leaf = target.rpartition(".")[2]
            if component(target) == "routing" or leaf in HOT_PATH_FORBIDDEN or leaf.startswith("urls"):
                offences.append(f"{module} loads {target} (through {via})")
    return offences


def test_no_module_imports_itself_through_others() -> None:
    assert circles(import_graph()) == []


def test_the_hot_path_never_loads_admin_report_or_view_code() -> None:
    assert hot_path_offences(import_graph()) == []


def test_the_graph_checks_see_a_circle_and_a_forbidden_load() -> None:
    graph = {
        "gateway.proxy": {"gateway.metrics", "billing.selectors"},
        "gateway.metrics": {"gateway.proxy"},
        "billing.selectors": {"billing.admin"},
        "billing.admin": set(),
    }
    assert circles(graph) == [["gateway.metrics", "gateway.proxy"]]
    assert hot_path_offences(graph) == [
        "gateway.metrics loads billing.admin (through billing.selectors)",
        "gateway.proxy loads billing.admin (through billing.selectors)",
    ]
