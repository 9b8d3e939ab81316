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


EXPECTED_CHANGES = {"images-32px": {"resize"}, "epochs-x2": {"epochs", "lr_cycle"}, "lr-one-cosine": {"lr_cycle"},
                    "arch-lr-x0.3": {"arch_lr"}, "arch-lr-x3": {"arch_lr"}, "arch-lr-budget": {"arch_lr"},
                    "arch-lr-budget-no-reg": {"arch_lr"}, "channels-16": {"channels"}}
# what arch-lr-budget-no-reg also turns off, per method: the regulariser its update has (gaea-darts has none on)
NO_REG_ALSO = {"gaea-darts": set(), "darts": {"arch_weight_decay"}, "gaea-gdas": {"entropy_coef"},
               "gdas": {"arch_weight_decay"}}


@pytest.mark.parametrize("scale", ["cpu", "cpu-deep"])
@pytest.mark.parametrize("method", ["gaea-darts", "darts", "gaea-gdas", "gdas"])
@pytest.mark.parametrize("variant", sorted(EXPECTED_CHANGES))
def test_each_ablation_variant_changes_one_factor(variant, method, scale):
    import dataclasses

    from gaeanas.reproduce import GridRun, grid_config

    from gaeanas.errors import ConfigError

    bench = load("collapse_ablation")
    assert set(bench.VARIANTS) == {"baseline", *EXPECTED_CHANGES}
    run = GridRun(method, "bilevel", 0)
    base = dataclasses.asdict(grid_config(run, scale, "d", None).resolved())
    if (variant == "images-32px" and scale == "cpu") or (variant == "lr-one-cosine" and method == "gdas"):
        with pytest.raises(ConfigError, match="changes nothing"):  # cpu has 32 pixels; gdas runs one cosine
            bench.variant_overrides(variant, run, scale)
        return
    changed = dataclasses.asdict(grid_config(run, scale, "d", None, **bench.variant_overrides(variant, run, scale))
                                 .resolved())
    expected = EXPECTED_CHANGES[variant] | (NO_REG_ALSO[method] if variant.endswith("no-reg") else set())
    if variant == "epochs-x2":  # the epoch counts of the recipe that are on scale with the run
        expected = {"epochs"} | {name for name in ("lr_cycle", "warmup_epochs") if base[name]}
    assert {k for k in base if base[k] != changed[k]} == expected
    if variant == "epochs-x2":  # a longer search keeps the recipe's shape: the cosine cycle and warm-up double too
        assert [changed[k] for k in ("epochs", "lr_cycle", "warmup_epochs")] == \
            [2 * base[k] for k in ("epochs", "lr_cycle", "warmup_epochs")]
    factor = {"arch-lr-x0.3": 0.3, "arch-lr-x3": 3.0, "arch-lr-budget": {"cpu": 12.5, "cpu-deep": 6.25}[scale]}
    factor["arch-lr-budget-no-reg"] = factor["arch-lr-budget"]
    if variant in factor:  # the budget: 1 / (0.4 of the epochs x 10,000 of 50,000 images), or 1 / (0.8 x 0.2)
        assert changed["arch_lr"] == pytest.approx(base["arch_lr"] * factor[variant])
    for name in NO_REG_ALSO[method] & expected:
        assert base[name] > 0 and changed[name] == 0


def test_ablation_defaults_to_the_variants_that_change_the_grid():
    from gaeanas.reproduce import build_grid

    bench = load("collapse_ablation")
    cpu = [v for v in bench.VARIANTS if bench.applies(v, build_grid(["gdas", "gaea-darts"], ["bilevel"], [0]), "cpu")]
    assert "images-32px" not in cpu and "lr-one-cosine" not in cpu  # cpu has 32 pixels; gdas runs one cosine
    assert {"baseline", "arch-lr-budget", "arch-lr-budget-no-reg", "channels-16"} <= set(cpu)
    deep = [v for v in bench.VARIANTS if bench.applies(v, build_grid(["darts"], ["bilevel"], [0]), "cpu-deep")]
    assert deep == list(bench.VARIANTS)


def test_ablation_tabulates_collapse_rate_and_first_collapse_epoch(tmp_path, capsys):
    from gaeanas.reproduce import GridRun
    from synth import fake_run, write_full_nb201_table

    conv = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    skip = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|nor_conv_3x3~2|"
    bench = load("collapse_ablation")
    # none, skip, 1x1, 3x3, pool: on seed 2, skip leads the 3x3 by 0.1 on 5 edges and trails it by 0.3 on one
    lead = [[0.1, 0.4, 0.1, 0.3, 0.1]] * 5 + [[0.1, 0.2, 0.1, 0.5, 0.1]]
    for seed, genotypes in enumerate([[conv, conv, conv], [conv, skip, skip], [conv, conv, skip]]):
        run = GridRun("darts", "bilevel", seed)
        fake_run(tmp_path / "channels-16" / "runs" / run.name, run, [90.0, 80.0, 54.3 if seed else 93.0],
                 [1.38] * 3, genotypes, 10.0, scale="cpu-deep", weights=lead if seed == 2 else None,
                 **bench.VARIANTS["channels-16"](run, "cpu-deep"))
    bench.main(["--data", "unused", "--benchmark", str(write_full_nb201_table(tmp_path / "t.csv")),
                "--out", str(tmp_path), "--variants", "lr-one-cosine,channels-16", "--methods", "darts",
                "--seeds", "0-2", "--report-only"])
    out = capsys.readouterr().out
    assert "lr-one-cosine: 0 of 3 runs finished" in out
    row = next(line for line in out.splitlines() if line.startswith("| channels-16 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["darts", "bilevel", "3", "2/3 (21–94%)"]
    assert cells[5] == "67.20 ± 18.24" and cells[8] == "1.380" and cells[9] == "2.5 (2 of 3)" and cells[10] == "- 2 3"
    assert cells[7] == "+0.0111"  # seed 2: (5 x 0.1 - 0.3) / 6 edges; seeds 0 and 1 uniform: 0
    assert (tmp_path / "ablation.md").read_text().count("| channels-16 |") == 1


def test_nb201_rank_trains_spread_architectures_and_reports_tau(tmp_path, capsys):
    import csv

    from gaeanas.nasbench import NB201Table
    from gaeanas.report import kendall_tau
    from synth import make_train_test_folders, write_full_nb201_table

    table_path = write_full_nb201_table(tmp_path / "t.csv")
    bench = load("nb201_rank")
    table = NB201Table.load(table_path)
    picked = bench.pick_architectures(table, 4, seed=0)
    accs = [table.query(a)["cifar10"] for a in picked]
    ranked = sorted(table.accuracies.values())
    assert accs == sorted(accs) and len(set(picked)) == 4
    assert accs[0] <= ranked[len(ranked) // 4][0] <= accs[1]  # one per quarter of the accuracy range
    assert picked == bench.pick_architectures(table, 4, seed=0) != bench.pick_architectures(table, 4, seed=1)
    data = make_train_test_folders(tmp_path / "data")
    argv = ["--benchmark", str(table_path), "--data", str(data), "--out", str(tmp_path / "out"), "--archs", "3",
            "--epochs", "1", "--resize", "8", "--subset", "12", "--test-subset", "6", "--channels", "2", "--cells",
            "1", "--batch-size", "6", "--device", "cpu"]
    bench.main(argv)
    out = capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "out" / "table.csv")))
    tau = kendall_tau([float(r["nb201_cifar10"]) for r in rows], [float(r["ours"]) for r in rows])
    assert len(rows) == 3 and f"Kendall tau {tau:.3f}" in out
    assert (tmp_path / "out" / "scatter.png").read_bytes().startswith(b"\x89PNG")
    bench.main(argv)  # finished trainings are reused, not rerun
    assert capsys.readouterr().out.count("[1/3]") == 1


def test_paper_table_puts_ours_beside_the_papers(tmp_path, capsys):
    import csv

    bench = load("paper_table")
    folder = tmp_path / "cpu"
    folder.mkdir()
    with open(folder / "table.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "objective", "cifar10_mean", "cifar10_std", "cifar100_mean", "cifar100_std"])
        writer.writerow(["gdas", "bilevel", 80.123, 1.5, 50.0, 2.0])
        writer.writerow(["optimal", "", 94.37, "", 73.51, ""])
    bench.main(["--scale", f"cpu={folder}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| Method | Objective | CIFAR-10: paper | CIFAR-10: cpu | CIFAR-100: paper |")
    gdas = next(line for line in lines if "(`gdas`)" in line)
    assert "| 93.52 ± 0.15 | 80.12 ± 1.50 |  | 50.00 ± 2.00 |" in gdas
    gaea = next(line for line in lines if "(`gaea-darts`) | erm" in line)
    assert "| 94.10 ± 0.29 | — | 73.43 ± 0.13 | — |" in gaea
    assert len(lines) == 2 + len(bench.PAPER_ROWS) + 1
    with pytest.raises(SystemExit):
        bench.main(["--scale", str(folder)])


def test_paper_table_derives_transfer_cells_only_where_the_benchmark_decides_them(tmp_path, capsys, monkeypatch):
    from gaeanas.nasbench import NB201Table
    from synth import write_full_nb201_table

    bench = load("paper_table")
    # cells by accuracy: 92.00 on one cell; 90.00 on two with other transfer values; 88.00 on two with the same ones
    table = NB201Table({"a": (92.0, 68.0, 44.0), "b": (90.0, 65.0, 40.0), "c": (90.004, 61.0, 40.0),
                        "d": (88.0, 60.0, 30.0), "e": (88.0, 60.0, 30.0)})
    rows = {("all-conv", "gaea-darts", "erm"): {"cifar10": (92.00, 0.00)},
            ("ambiguous", "darts", "erm"): {"cifar10": (90.00, 0.00)},  # its CIFAR-100 could be 65 or 61
            ("twins", "gaea-darts", "bilevel"): {"cifar10": (88.00, 0.00)},  # two cells, the same accuracies
            ("spread", "gdas", "bilevel"): {"cifar10": (92.00, 0.10)},  # the seeds differ: not one cell
            ("known", "darts", "bilevel"): {"cifar10": (92.00, 0.00), "cifar100": (60.0, 1.0)}}
    monkeypatch.setattr(bench, "PAPER_ROWS", rows)
    assert bench.derived_transfer(table) == {
        ("all-conv", "gaea-darts", "erm"): {"cifar100": (68.0, 0.0), "ImageNet16-120": (44.0, 0.0)},
        ("twins", "gaea-darts", "bilevel"): {"cifar100": (60.0, 0.0), "ImageNet16-120": (30.0, 0.0)},
        ("known", "darts", "bilevel"): {"ImageNet16-120": (44.0, 0.0)}}
    folder = tmp_path / "cpu"
    folder.mkdir()
    (folder / "table.csv").write_text("method,objective,cifar10_mean,cifar10_std\n")
    monkeypatch.setattr(bench, "PAPER_ROWS", {k: v for k, v in rows.items() if k[0] in ("all-conv", "spread")})
    bench.main(["--scale", f"cpu={folder}", "--benchmark", str(write_full_nb201_table(tmp_path / "t.csv"))])
    out = capsys.readouterr().out  # the full synthetic table: CIFAR-10 = 80 + 2 x (3x3 convs); 92 = six of them
    assert "| all-conv (`gaea-darts`) | erm | 92.00 ± 0.00 | — | 68.00 ± 0.00† | — | 44.00 ± 0.00† | — |" \
        in out
    assert "| spread (`gdas`) | bilevel | 92.00 ± 0.10 | — |  | — |  | — |" in out
    assert "† derived from the benchmark" in out


def test_arch_drift_counts_architecture_steps_and_distance(tmp_path, capsys):
    import json
    import math

    from gaeanas.reproduce import GridRun
    from synth import fake_run

    bench = load("arch_drift")
    assert bench.arch_steps_per_epoch({"subset": 10_000, "objective": "bilevel", "batch_size": 64}) == 79
    assert bench.arch_steps_per_epoch({"subset": 10_000, "objective": "erm", "batch_size": 64}) == 157
    run = fake_run(tmp_path / "run", GridRun("gaea-darts", "erm", 0), [80.0, 85.0], [1.6, 1.5], "x", 10.0,
                   warmup_epochs=1)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    records[1]["arch_weights"] = {"cell": [[0.3, 0.2, 0.2, 0.2, 0.1]] * 6}
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    steps, distance, entropy, _ = bench.drift(run)
    assert steps.tolist() == [0, 157] and distance == pytest.approx([0.0, 0.1])
    assert entropy[1] == pytest.approx(-sum(p * math.log(p) for p in (0.3, 0.2, 0.2, 0.2, 0.1)))
    bench.main([str(run), "--out", str(tmp_path / "drift.png")])
    assert "| run | gaea-darts | 0.1 | 157 | 0.1000 |" in capsys.readouterr().out
    assert (tmp_path / "drift.png").read_bytes().startswith(b"\x89PNG")


def test_ddp_scaling_runs_one_process_and_two_ranks(tmp_path, capsys):
    from synth import make_image_folder

    data = make_image_folder(tmp_path / "data", classes=3, per_class=12)
    load("ddp_scaling").main(["--data", str(data), "--ranks", "1,2", "--channels", "2", "--batch-size", "12",
                              "--subset", "36", "--resize", "8"])
    rows = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\| [12] \|", line)]
    assert len(rows) == 2
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2"]
    assert float(rows[0].split("|")[4].strip().rstrip("x")) == pytest.approx(1.0)


def test_compile_breakeven_reports_overhead_and_verdict(capsys):
    load("compile_breakeven").main(["--device", "cpu", "--channels", "2", "--batch", "4", "--image", "8",
                                    "--steps", "2", "--backend", "eager", "--search-steps", "100"])
    out = capsys.readouterr().out
    assert re.search(r"eager step: [\d.]+ ms; compiled step: [\d.]+ ms \([\d.]+x\)", out)
    assert re.search(r"compile overhead: -?[\d.]+ s", out)
    assert re.search(r"a search of 100 steps: eager \d+ s, compiled \d+ s: compiling (gains|loses) \d+ s", out)


def test_xnas_clipping_reads_a_finished_run(tmp_path, capsys):
    from gaeanas.search import SearchConfig, run_search
    from synth import make_image_folder

    data = make_image_folder(tmp_path / "data")
    run_search(SearchConfig(space="nb201", method="xnas", data=str(data), epochs=2, channels=2, cells=1,
                            batch_size=12, objective="bilevel", example_clip=0.01), tmp_path / "run")
    load("xnas_clipping").main([str(tmp_path / "run"), "--batches", "2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\| \d \|", line)]
    assert len(rows) == 2
    cells = [float(c) for c in rows[0].strip("|").split("|")]
    assert cells[2] == pytest.approx(1.0)  # L = 0.01: every example is clipped
    assert -1.0 <= cells[5] <= 1.0 and cells[4] <= 0.01 + 1e-6  # the clipped mean is within the clip


def test_search_end_to_end_times_our_search_in_a_fresh_process(tmp_path):
    from synth import make_train_test_folders

    data = make_train_test_folders(tmp_path / "data")
    bench = load("search_end_to_end")
    args = bench.parse_args(["--data", str(data), "--peer-repo", str(tmp_path), "--subset", "16", "--batch", "4",
                             "--channels", "4", "--cells", "1", "--threads", "1"])
    report = bench.timed_child(bench.child_command(args, "ours", str(tmp_path / "cache")))
    assert report["data"] > 0 and report["compute"] > 0 and report["other"] > 0
    assert report["wall"] == pytest.approx(report["data"] + report["compute"] + report["other"])
    from gaeanas.spaces import get_space
    get_space("nb201").parse_genotype(report["genotype"])  # a whole NAS-Bench-201 cell
    assert not any((tmp_path / "cache").rglob("*.pt"))  # a subset decodes only its own images, and caches nothing


def test_search_end_to_end_needs_the_peer_repo(tmp_path):
    with pytest.raises(SystemExit):
        load("search_end_to_end").main(["--data", str(tmp_path)])


def test_timed_loader_counts_waits_and_keeps_every_batch():
    bench = load("search_end_to_end")
    clock = bench.new_clock()
    loader = bench.TimedLoader([sum(range(20_000)) for _ in range(3)], clock)
    assert len(loader) == 3 and list(loader) == [sum(range(20_000))] * 3
    assert clock["waits"] > 0
    clock.update(load=1.0, loops=5.0, waits=2.0)
    assert bench.split(clock) == {"data": 3.0, "compute": 3.0}


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_step_profile_groups_the_step_and_bounds_it_by_its_convolutions(space, capsys):
    load("step_profile").main(["--space", space, "--steps", "1", "--channels", "4", "--cells", "3", "--batch", "2", "--peak-n", "256"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ") and "%" in line}
    shares = [int(re.search(r"\| (\d+)% \|", row).group(1)) for name, row in rows.items() if not name.startswith("aten")]
    assert "convolution" in rows and "batch norm" in rows
    assert sum(shares) == pytest.approx(100, abs=len(shares))  # every aten op is in one group (rounding aside)
    conv_gflop = float(rows["convolution"].split("|")[4])
    assert conv_gflop > 0
    whole, bound = map(int, re.search(r"(\d+)% of peak; with every other group free it would reach (\d+)%", out).groups())
    assert whole <= bound


def test_arch_equilibrium_is_where_each_update_stops_moving():
    """The stationary points arch_equilibrium.py reports are those of the optimizers themselves: exponentiated
    gradient with the KL term stops at softmax(-g / c), Adam with L2 on the logits at alpha = -g / wd."""
    import math

    import torch

    from gaeanas.optim import create_arch_optimizer
    from gaeanas.optim.eg import exponentiated_gradient_step
    from gaeanas.search import SearchConfig

    bench = load("arch_equilibrium")
    g = torch.tensor([[0.02, -0.01, 0.0, 0.005, -0.015]])
    theta = torch.full((1, 5), 0.2)
    for _ in range(3000):
        exponentiated_gradient_step(theta, g, lr=0.5, floor=1e-5, entropy_coef=0.01)
    torch.testing.assert_close(theta, torch.softmax(-g / 0.01, dim=-1), atol=1e-4, rtol=1e-3)
    eg = SearchConfig(space="nb201", method="gaea-gdas").resolved()
    assert bench.stationary_entropy(eg, g) == pytest.approx(bench.row_entropy(theta), abs=1e-3)
    alpha = torch.zeros(1, 5, requires_grad=True)
    adam = create_arch_optimizer("adam", [alpha], lr=0.01, betas=(0.5, 0.999), weight_decay=1e-3)
    for _ in range(6000):
        alpha.grad = g.clone()
        adam.step()
    torch.testing.assert_close(alpha.detach(), -g / 1e-3, atol=0.3, rtol=0.02)
    adam_cfg = SearchConfig(space="nb201", method="gdas").resolved()
    assert bench.stationary_entropy(adam_cfg, g) == pytest.approx(
        bench.row_entropy(torch.softmax(-g / 1e-3, dim=-1)))
    assert bench.stationary_entropy(eg, torch.zeros(2, 5)) == pytest.approx(math.log(5))
    free = SearchConfig(space="nb201", method="gaea-gdas", entropy_coef=0.0).resolved()
    assert bench.stationary_entropy(free, g) is None  # no regulariser: the weights drift, no stationary point
    assert bench.stationary_entropy(free, g, coef=0.01) == bench.stationary_entropy(eg, g)  # --coef: what c would do


def test_arch_equilibrium_measures_a_finished_run_and_refuses_one_without_checkpoint(tmp_path, capsys):
    from gaeanas.search import SearchConfig, run_search
    from synth import make_image_folder

    data = make_image_folder(tmp_path / "data")
    run = tmp_path / "run"
    run_search(SearchConfig(space="nb201", method="gaea-gdas", objective="bilevel", data=str(data), channels=2,
                            cells=1, epochs=2, batch_size=6, seed=0), run)
    bench = load("arch_equilibrium")
    bench.main([str(run), "--batches", "4"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| run "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "2" and cells[2] == "10.00"  # the last epoch's temperature: the warm-up holds tau_max
    assert float(cells[3]) > 0 and float(cells[4]) > 0 and cells[5] == "0.01"  # gaea-gdas' own KL coefficient
    assert 0 < float(cells[6]) <= 1.6095 and float(cells[8]) == pytest.approx(1.6094, abs=1e-3)
    bench.main([str(run), "--batches", "4", "--coef", "1e-9"])  # a vanishing regulariser: the argmax, entropy 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| run "))
    assert [c.strip() for c in row.strip("|").split("|")][5:7] == ["1e-09", "0.0000"]
    (run / "checkpoint.pt").unlink()
    with pytest.raises(SystemExit, match="no checkpoint.pt"):
        bench.main([str(run)])
