"""Shared test set-up: every test gets its own dataset cache, never the user's, and leaves torch's CPU thread count
as it found it (benchmarks' main() sets it; a test run in-process with other threads than its subprocesses would
sum in other orders, and the bit-identical resume tests compare the two)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "gaeanas-cache"))


@pytest.fixture(autouse=True)
def same_cpu_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
