"""docs/architecture.md points at real code: every repository path it names in
backticks exists, and every ``path::name`` is defined in that file, so the page
cannot silently rot when code moves."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

# A name without a slash counts as a path only with one of these endings (manage.py).
EXTENSIONS = (".py", ".md", ".yaml", ".yml", ".toml", ".conf", ".sh", ".json", ".txt")
_FENCED = re.compile(r"^```.*?^```", flags=re.S | re.M)
_INLINE = re.compile(r"`([^`\n]+)`")
# Relative paths only: URL paths (/v1/models), Redis keys (oneflow:usage), commands
# (spaces), placeholders (<org>) and dotted module names never match.
_PATH = re.compile(r"^[\w.-]+(?:/[\w.-]+)*/?(?:::[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)?$")


@dataclass(frozen=True)
class Reference:
    path: str
    name: str | None  # a function, class, constant or Class.method defined in ``path``


def references(markdown: str) -> list[Reference]:
    """The repository paths named in backticks outside fenced code blocks."""
    found = []
    for token in _INLINE.findall(_FENCED.sub("", markdown)):
        if not _PATH.match(token):
            continue
        path, _, name = token.partition("::")
        if "/" in path or path.endswith(EXTENSIONS):
            found.append(Reference(path, name or None))
    return found


def _names(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    names: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names |= {target.id: node for target in node.targets if isinstance(target, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def defines(source: Path, name: str) -> bool:
    """Whether ``source`` defines ``name`` at module level, or ``Class.member`` in a class."""
    outer, _, member = name.partition(".")
    node = _names(ast.parse(source.read_text()).body).get(outer)
    if node is None or not member:
        return node is not None
    return isinstance(node, ast.ClassDef) and member in _names(node.body)


def test_every_path_the_architecture_doc_names_exists() -> None:
    found = references(DOC.read_text())
    missing = sorted({ref.path for ref in found if not (ROOT / ref.path).exists()})
    not_folders = sorted({ref.path for ref in found if ref.path.endswith("/") and not (ROOT / ref.path).is_dir()})
    assert len(found) > 50  # the page points at code throughout, and the reader finds it
    assert missing == []
    assert not_folders == []


def test_every_name_the_architecture_doc_points_at_is_defined_there() -> None:
    named = [ref for ref in references(DOC.read_text()) if ref.name and (ROOT / ref.path).is_file()]
    undefined = sorted(f"{ref.path}::{ref.name}" for ref in named if not defines(ROOT / ref.path, ref.name or ""))
    assert len(named) > 20
    assert undefined == []


def test_the_reader_takes_paths_and_skips_what_is_not_one() -> None:
    text = (
        "See `routing/nowhere.py`, `billing/holds.py::_HOLD`, `manage.py` and `providers/`;\n"
        "not `/v1/models`, `oneflow:credits:<org>:free`, `env:NAME`, `max_tokens`,\n"
        "`oneflow.asgi:application`, `celery -A oneflow worker` or `req_<uuid>`.\n"
        "```\nsee `in/a/code/block.py`\n```\n"
    )
    assert references(text) == [
        Reference("routing/nowhere.py", None),
        Reference("billing/holds.py", "_HOLD"),
        Reference("manage.py", None),
        Reference("providers/", None),
    ]


def test_a_name_counts_only_where_it_is_defined(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "LIMIT = 1\nlabel: str = 'x'\n\n\ndef run():\n    inner = 2\n\n\nclass Book:\n    def at(self):\n        pass\n"
    )
    assert [defines(source, name) for name in ("LIMIT", "label", "run", "Book", "Book.at")] == [True] * 5
    assert [defines(source, name) for name in ("inner", "Book.gone", "run.inner", "missing")] == [False] * 4


def test_the_readme_links_the_architecture_doc() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()


def test_every_other_doc_points_at_real_code_too() -> None:
    """The pages beside architecture.md (translation rules, ...) name code the same way."""
    others = [doc for doc in DOCS if doc != DOC]
    found = [(doc.name, ref) for doc in others for ref in references(doc.read_text())]
    missing = sorted(f"{name}: {ref.path}" for name, ref in found if not (ROOT / ref.path).exists())
    undefined = sorted(
        f"{name}: {ref.path}::{ref.name}"
        for name, ref in found
        if ref.name and (ROOT / ref.path).is_file() and not defines(ROOT / ref.path, ref.name)
    )
    assert others and found
    assert (missing, undefined) == ([], [])
    readme = (ROOT / "README.md").read_text()
    assert [doc.name for doc in others if f"(docs/{doc.name})" not in readme] == [], "the README links every doc"
