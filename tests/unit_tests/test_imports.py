import ast
import json
import subprocess
import sys
from pathlib import Path

from langchain_core.language_models import BaseChatModel

import langchain_moa
from langchain_moa import ChatMoA

PACKAGE = Path(langchain_moa.__file__).parent

EXPECTED_ALL = [
    "AGGREGATE_AND_SYNTHESIZE_PROMPT",
    "AggregatorFailedError",
    "ChatMoA",
    "LayerFailedError",
    "LlamaServer",
    "ModelConfig",
    "StackError",
    "StackSpec",
    "build_moa_graph",
    "get_accounting",
    "get_calls",
]


def test_all_imports() -> None:
    assert sorted(langchain_moa.__all__) == sorted(EXPECTED_ALL)
    for name in EXPECTED_ALL:
        assert hasattr(langchain_moa, name)


def test_chat_moa_is_a_chat_model() -> None:
    assert issubclass(ChatMoA, BaseChatModel)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports, anywhere in it."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # "from pkg import module" imports the module; else the names live in pkg.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = _import_graph()
    assert "langchain_moa.chat_models" in graph
    assert "langchain_moa.stacks.spec" in graph["langchain_moa.stacks.factory"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


HEAVY = ("llama_cpp", "sklearn", "matplotlib", "numpy", "pooch")

PROBE = """
import json, subprocess, sys
started = []
real_popen = subprocess.Popen
class Refused(real_popen):
    def __init__(self, *args, **kwargs):
        started.append(args[0] if args else kwargs.get("args"))
        raise RuntimeError("a process was started")
subprocess.Popen = Refused
import langchain_moa
import langchain_moa.studio
from langchain_moa import ChatMoA
ChatMoA()
ChatMoA.local()
print(json.dumps({"loaded": sorted(m for m in %r if m in sys.modules), "started": started}))
"""


def test_importing_and_constructing_load_nothing_heavy_and_start_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"loaded": [], "started": []}
