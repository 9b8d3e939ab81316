"""Memory estimates: byte formatting, the measured or overridden free memory, and the refusal message."""
from __future__ import annotations

import pytest
import torch

from gaeanas import memory
from gaeanas.errors import ConfigError, ResourceError
from gaeanas.memory import MEMORY_LIMIT_ENV, available_memory, dataset_bytes, format_bytes, require_memory


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (1, "1 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (3.2 * 2**30, "3.2 GiB"), (21.3 * 2**30, "21.3 GiB"), (1.4 * 2**50, "1.4 PiB"), (2**70, "1024.0 EiB"),
])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_dataset_bytes():
    assert dataset_bytes(50_000, 3, 32, 32) == 153_600_000
    assert dataset_bytes(4, 3, 100_000, 100_000) == 120_000_000_000


def test_env_limit_replaces_the_measurement(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "12345")
    assert available_memory(torch.device("cpu")) == 12345
    assert available_memory("meta") == 12345
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(ConfigError, match="GAEANAS_MEMORY_LIMIT must be a whole number of bytes, got 'lots'"):
        available_memory("cpu")
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "-5")
    with pytest.raises(ConfigError, match="got '-5'"):
        available_memory("cpu")


def test_cpu_measurement_takes_the_smaller_of_host_and_cgroup(monkeypatch, tmp_path):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683584 kB\nMemFree:        1000 kB\nMemAvailable:   2000 kB\n")
    monkeypatch.setattr(memory, "_MEMINFO", meminfo)
    monkeypatch.setattr(memory, "_CGROUP", tmp_path / "no-cgroup")
    assert available_memory("cpu") == 2000 * 1024
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    monkeypatch.setattr(memory, "_CGROUP", cgroup)
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory("cpu") == 2000 * 1024
    (cgroup / "memory.max").write_text("1500000\n")
    (cgroup / "memory.current").write_text("500000\n")
    assert available_memory("cpu") == 1_000_000
    monkeypatch.setattr(memory, "_MEMINFO", tmp_path / "no-meminfo")  # falls back to sysconf
    assert available_memory("cpu") == 1_000_000
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory("cpu") > 0


def test_meta_device_is_unknown_and_never_refused(monkeypatch):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    assert available_memory("meta") is None
    require_memory(2**80, "anything", torch.device("meta"), "hint")


def test_require_memory_message(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, str(int(21.3 * 2**30)))
    require_memory(2**30, "decoding 10 images", torch.device("cpu"), "use --resize N")
    need = dataset_bytes(50_000, 3, 100_000, 100_000)
    with pytest.raises(ResourceError) as err:
        require_memory(need, "decoding 50,000 images at 100000x100000", torch.device("cpu"),
                       "use --resize N with a smaller N")
    assert str(err.value) == ("decoding 50,000 images at 100000x100000 needs about 1.3 PiB, but only 21.3 GiB is "
                              "available; use --resize N with a smaller N")


def test_require_memory_names_a_gpu(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1024")
    with pytest.raises(ResourceError, match=r"needs about 2\.0 KiB, but only 1\.0 KiB is available on cuda:0; h$"):
        require_memory(2048, "x", torch.device("cuda:0"), "h")


def test_is_out_of_memory():
    from gaeanas.memory import is_out_of_memory

    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate "
                                         "memory: you tried to allocate 1000000000000000 bytes."))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))
    try:
        torch.empty(2**62, dtype=torch.uint8)
    except Exception as err:  # what this machine's allocator actually raises
        assert is_out_of_memory(err)
