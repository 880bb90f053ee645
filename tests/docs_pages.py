"""The README and docs/ pages, and their fenced code blocks, as the docs tests read them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)

README_ON_THE_EMBEDDED_MODEL = ("ChatMoA(max_tokens=256)", "from openai import OpenAI")
"""A needle of each README block ``tests/integration_tests/test_readme.py`` runs."""


def blocks(lang: str, pages: list[Path] = PAGES) -> list[tuple[str, int, str]]:
    """Each ``lang`` block of ``pages``: where it is (``page:line``), its line, its text."""
    found = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for block in FENCE.finditer(text):
            if block["lang"] == lang:
                line = text[: block.start()].count("\n") + 1
                found.append((f"{page.relative_to(ROOT)}:{line}", line, block["body"]))
    return found
