"""No import circle inside rl/: every import, at module level or inside a function, points one way
(grpo -> atropos_consumer -> policy; the shared policy/log code lives in rl/policy.py)."""
import ast
from pathlib import Path

import longrecall

RL = Path(longrecall.__file__).resolve().parent / "rl"


def _imports(path: Path) -> set[str]:
    """rl/ modules that `path` imports anywhere (relative `.x` or absolute longrecall.rl.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.level == 0 and node.module and node.module.startswith("longrecall.rl."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("longrecall.rl.")}
    return found - {path.stem}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return seen


def test_the_finder_sees_function_level_imports(tmp_path):
    (tmp_path / "grpo.py").write_text("from .policy import build_policy\ndef f():\n    from .atropos_consumer import train_atropos\n")
    assert _imports(tmp_path / "grpo.py") == {"policy", "atropos_consumer"}


def test_no_import_circle_in_rl():
    modules = {p.stem: p for p in RL.glob("*.py") if p.stem != "__init__"}
    graph = {name: _imports(path) & modules.keys() for name, path in modules.items()}
    circles = sorted(name for name in graph if name in _reachable(graph, name))
    assert circles == [], f"import circle through {circles}: {graph}"
    assert "grpo" not in _reachable(graph, "atropos_consumer")  # the consumer needs the policy, not the TRL trainer
