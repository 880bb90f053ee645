"""The README and docs/ pages: every link leads somewhere, every code block is checked.

A code block is checked here without a server: Python is compiled and its
imports resolved, every ``moa`` command line is parsed by the ``moa`` command's
own parser, every ``pip install`` names a real extra, YAML parses and a stack in
it is a valid stack spec, a script a command runs exists. Every Python block is
also run, against servers on 127.0.0.1: ``tests/integration_tests/test_docs_run.py``
and ``test_readme.py``.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from langchain_moa import cli
from langchain_moa.stacks import StackSpec
from tests.docs_pages import FENCE, PAGES, ROOT, blocks

LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
EXTRAS = set(PROJECT["optional-dependencies"])


def _ids(found: list[tuple[str, int, str]]) -> list[str]:
    return [where for where, _, _ in found]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.*)$", text, re.MULTILINE)}


def test_every_block_says_its_language() -> None:
    for page in PAGES:
        for block in FENCE.finditer(page.read_text(encoding="utf-8")):
            assert block["lang"], f"{page.relative_to(ROOT)}: a code block names no language"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page: Path) -> None:
    for link in LINK.finditer(FENCE.sub("", page.read_text(encoding="utf-8"))):
        target = link["target"]
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        assert where.exists(), f"{page.relative_to(ROOT)}: {target} leads nowhere"
        if anchor and where.suffix == ".md":
            assert anchor in _anchors(where), f"{page.relative_to(ROOT)}: no heading #{anchor}"


PYTHON = blocks("python")


@pytest.mark.parametrize(("where", "line", "body"), PYTHON, ids=_ids(PYTHON))
def test_python_blocks_compile_and_import_what_exists(where: str, line: int, body: str) -> None:
    tree = ast.parse(body, filename=where)  # a SyntaxError names the block
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
    assert line > 0


def _commands(body: str) -> list[str]:
    """The block's command lines, continuations joined, comments and prompts dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    lines = []
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


BASH = blocks("bash")


@pytest.mark.parametrize(("where", "line", "body"), BASH, ids=_ids(BASH))
def test_shell_blocks_name_real_commands_flags_and_extras(where: str, line: int, body: str) -> None:
    parser = cli._parser()
    for command in _commands(body):
        words = shlex.split(command)
        while words and re.match(r"^[A-Z_]+=", words[0]):
            words.pop(0)  # VAR=value before the command
        if not words:
            continue
        if words[0] in {"moa", ".venv/bin/moa"}:
            try:
                parser.parse_args(words[1:])
            except SystemExit as exit_:
                pytest.fail(f"{where}: `{command}` is not a moa command line ({exit_})")
        elif words[:2] == ["pip", "install"]:
            for word in words[2:]:
                if extras := re.fullmatch(r"langchain-moa\[(.+)\]", word):
                    assert set(extras[1].split(",")) <= EXTRAS, f"{where}: {word}"
        elif words[0].endswith("python") and len(words) > 1 and words[1].endswith(".py"):
            assert (ROOT / words[1]).exists(), f"{where}: no script {words[1]}"
    assert line > 0


YAML = blocks("yaml")


@pytest.mark.parametrize(("where", "line", "body"), YAML, ids=_ids(YAML))
def test_yaml_blocks_parse_and_their_stacks_are_valid(where: str, line: int, body: str) -> None:
    data = yaml.safe_load(body)
    if isinstance(data, dict) and {"proposers", "proposer_layers", "preset"} & set(data):
        StackSpec.model_validate(data)  # a StackError names the key
    assert line > 0
