import pytest

from tests.unit_tests.eval.hf_cache import use_hf_cache


@pytest.fixture(autouse=True)
def _only_repository_data(monkeypatch, tmp_path_factory):
    """No test reads a user's data folder or writes to a user's cache."""
    monkeypatch.delenv("MOA_DATA_DIR", raising=False)
    monkeypatch.setenv("MOA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    # An empty Hugging Face cache, offline: LC is length_controlled_minimal unless a test
    # fills it.
    use_hf_cache(monkeypatch, tmp_path_factory.mktemp("hf_cache"))
