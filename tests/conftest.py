"""Shared test set-up: every test gets its own dataset cache, never the user's."""
import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "gaeanas-cache"))
