"""Holds the import graph of DESIGN.md: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("oneflow", "audit", "accounts", "providers", "billing", "routing")

# Component -> the project components it may import (besides itself).
ALLOWED = {
    "oneflow.lib": set(),
    "oneflow": {"oneflow.lib"},
    "audit": {"oneflow.lib"},
    "accounts": {"audit", "oneflow.lib"},
    "providers": {"audit", "oneflow.lib"},
    "billing": {"audit", "accounts", "oneflow.lib"},
    "routing": {"audit", "accounts", "providers", "billing", "oneflow.lib"},
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
