"""The benchmark scripts run end to end (ours only; the peer, xautodl, is not a project dependency)."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_supernet_speed_prints_a_row_for_ours(space, capsys):
    load("supernet_speed").main(["--space", space, "--batch", "2", "--repeats", "2", "--steps", "1",
                                 "--warmup", "0", "--no-peer", "--no-memory", "--channels", "4", "--cells", "3",
                                 "--peak-n", "256"])
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith(f"| {space} | gaeanas darts")]
    assert len(row) == 1
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert float(cells[3]) > 0 and float(cells[4]) > 0  # img/s, slowest and median step
    assert float(cells[7]) > 0  # FLOPs per step were counted
    assert re.search(r"attainable peak .*: [\d.]+ GFLOP/s", out)


def test_search_epoch_projects_the_paper_scale_epoch(capsys):
    load("search_epoch").main(["--device", "cpu", "--steps", "2", "--warmup", "0", "--channels", "4", "--cells", "1",
                               "--batch", "8", "--images", "64"])
    out = capsys.readouterr().out
    match = re.search(r"epoch: ([\d.]+) s \(extrapolated\); 25 epochs: (\d+) s", out)
    assert match and float(match.group(2)) == pytest.approx(25 * float(match.group(1)), rel=1e-3, abs=2)
    assert "timed 2 of 8 steps" in out


@pytest.mark.parametrize("groups", [1, 4, 8])
def test_conv_backward_flops_count_groups(groups):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    bench = load("supernet_speed")
    conv = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=groups, bias=False)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward:
                                                             bench.conv_backward_flops})
    with counter:
        conv(x).sum().backward()
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    forward = 2 * 2 * 8 * 6 * 6 * (8 // groups) * 9
    assert counts["aten.convolution"] == forward
    assert counts["aten.convolution_backward"] == 2 * forward  # input and weight gradients


def test_sparse_skip_step_times_a_finished_run_at_its_final_weights(tmp_path, capsys):
    import json

    from gaeanas.errors import ConfigError
    from gaeanas.search import SearchConfig, run_search
    from synth import make_image_folder

    data = make_image_folder(tmp_path / "data")
    run = tmp_path / "run"
    run_search(SearchConfig(space="nb201", method="gaea-darts", data=str(data), channels=2, cells=1, epochs=1,
                            batch_size=6, seed=0), run)
    result = json.loads((run / "result.json").read_text())
    ops = len(result["ops"])
    rows = [[1.0 / ops] * ops for _ in range(6)]
    rows[0] = [0.02, 0.08] + [0.9 / (ops - 2)] * (ops - 2)  # one weight below 0.05, two below 0.1
    (run / "result.json").write_text(json.dumps({**result, "arch_weights": {"cell": rows}}))
    bench = load("sparse_skip_step")
    bench.main([str(run), "--thresholds", "0.05,0.1", "--repeats", "1", "--steps", "1"])
    table = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                           for line in capsys.readouterr().out.splitlines() if line.startswith("| "))}
    assert table["dense"][3] == "1.000"
    assert table["0.05"][1].startswith(f"1 of {6 * ops}") and table["0.1"][1].startswith(f"2 of {6 * ops}")
    assert all(float(table[t][2]) > 0 for t in ("dense", "0.05", "0.1"))
    (run / "result.json").unlink()
    with pytest.raises(ConfigError, match="not a finished search run"):
        bench.main([str(run)])
