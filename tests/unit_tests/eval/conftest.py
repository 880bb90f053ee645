import pytest


@pytest.fixture(autouse=True)
def _only_repository_data(monkeypatch, tmp_path_factory):
    """No test reads a user's data folder or writes to a user's cache."""
    monkeypatch.delenv("MOA_DATA_DIR", raising=False)
    monkeypatch.setenv("MOA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
