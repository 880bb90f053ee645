"""A Hugging Face cache in a temporary folder, laid out as huggingface_hub lays out its own."""

from pathlib import Path

import huggingface_hub.constants

from langchain_moa.eval.alpaca import hub

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def use_hf_cache(monkeypatch, cache: Path) -> Path:
    """Point huggingface_hub at ``cache``, offline: no test reads a user's cache or the hub."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads both variables once, when it is imported.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    # Each test fetches afresh and says its own one-line notes.
    monkeypatch.setattr(hub, "_said", set())
    monkeypatch.setattr(hub, "_fetched", {})
    return cache


def fill_hf_cache(cache: Path, files: dict[str, str]) -> Path:
    """Put ``files`` (name -> text) into ``tatsu-lab/alpaca_eval``'s snapshot at ``main``."""
    repo = cache / f"datasets--{hub.HUB_REPO_ID.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT, encoding="utf-8")
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (snapshot / name).write_text(text, encoding="utf-8")
    return snapshot
