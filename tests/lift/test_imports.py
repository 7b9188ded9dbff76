"""No import circles inside lift/ or train/: every import, at module level or inside a function, points one way."""
import ast
from pathlib import Path

import pytest

import longrecall

PKG = Path(longrecall.__file__).resolve().parent


def _imports(path: Path, package: str) -> set[str]:
    """Sibling modules of `package` that `path` imports anywhere (relative `.x` or absolute longrecall.<package>.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.level == 0 and node.module and node.module.startswith(f"longrecall.{package}."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith(f"longrecall.{package}.")}
    return found - {path.stem}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_function_level_circle(tmp_path):
    assert _cycle({"ask": {"ingest"}, "ingest": {"ask"}}) == ["ask", "ingest", "ask"]
    assert _cycle({"ask": {"folder"}, "ingest": {"folder"}, "evaluate": {"ask", "folder"}}) is None
    (tmp_path / "ingest.py").write_text("def f():\n    from .ask import load\n")
    assert _imports(tmp_path / "ingest.py", "lift") == {"ask"}


@pytest.mark.parametrize("package", ["lift", "train"])
def test_no_import_circle(package):
    modules = {p.stem: p for p in (PKG / package).glob("*.py") if p.stem != "__init__"}
    graph = {name: _imports(path, package) & modules.keys() for name, path in modules.items()}
    assert _cycle(graph) is None, f"import circle in longrecall.{package}: {' -> '.join(_cycle(graph))}"
