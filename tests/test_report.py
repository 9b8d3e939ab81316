"""Reproduction reports: aggregation over seeds, the table layout, reuse of finished runs, plots."""
import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from gaeanas.cli import main
from gaeanas.errors import ConfigError
from gaeanas.report import aggregate, first_collapse_epoch, format_table_md, group_runs, load_run, plot_entropy, \
    plot_oracle, plot_skip_strip, wilson_interval, write_table_csv
from gaeanas.reproduce import DEFAULT_GRID, GridRun, build_grid, grid_config, run_grid, write_report
from gaeanas.nasbench import NB201Table

from synth import fake_run, make_image_folder, write_full_nb201_table

CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|nor_conv_3x3~2|"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fake_grid(tmp_path):
    runs = []
    finals = {"gaea-darts": [93.0, 94.0, 92.0], "darts": [54.0, 60.0, 90.0]}
    for method, objective in (("gaea-darts", "erm"), ("darts", "erm")):
        for seed, final in enumerate(finals[method]):
            run = GridRun(method, objective, seed)
            genotype = CONV if method == "gaea-darts" else SKIP
            entropy = [1.38, 1.2, 1.0 - 0.1 * seed] if method == "gaea-darts" else [1.386, 1.386, 1.385]
            runs.append(fake_run(tmp_path / "runs" / run.name, run, [80.0, 85.0, final], entropy, genotype,
                                 100.0 + seed))
    return tmp_path, runs


def test_aggregate_means_and_stds_over_seeds(fake_grid):
    _, paths = fake_grid
    rows = aggregate([load_run(p) for p in paths])
    assert [(r["method"], r["objective"], r["seeds"]) for r in rows] == [("gaea-darts", "erm", 3), ("darts", "erm", 3)]
    gaea, darts = rows
    assert gaea["cifar10"] == pytest.approx((93.0, np.std([93.0, 94.0, 92.0])))
    assert darts["cifar100"] == pytest.approx((np.mean([34.0, 40.0, 70.0]), np.std([34.0, 40.0, 70.0])))
    assert gaea["entropy"] == pytest.approx((0.9, np.std([1.0, 0.9, 0.8])))
    assert gaea["search_seconds"] == pytest.approx((101.0, np.std([100.0, 101.0, 102.0])))
    assert gaea["skip_edges"] == (0.0, 0.0) and darts["skip_edges"] == (5.0, 0.0)
    assert gaea["ops"] == "no none"  # darts-style runs exclude none, as in the paper


def test_table_layout(fake_grid, tmp_path):
    _, paths = fake_grid
    rows = aggregate([load_run(p) for p in paths])
    best = {"cifar10": 94.37, "cifar100": 73.51, "ImageNet16-120": 47.31}
    lines = format_table_md(rows, best).strip().splitlines()
    assert lines[0].split("|")[1:-1] == [" Method ", " Objective ", " Ops ", " Seeds ", " Epochs ", " Genotype of ",
                                         " CIFAR-10 ", " CIFAR-10 median ", " CIFAR-10 worst ", " CIFAR-100 ",
                                         " ImageNet16-120 ", " CIFAR-10, last epoch ", " Search (s) ", " Final entropy ",
                                         " Skip edges ", " Collapsed (95% CI) "]
    assert len(lines) == 2 + 2 + 1
    assert "| gaea-darts | erm | no none | 3 | 3 | last epoch | 93.00 ± 0.82 | 93.00 | 92.00 |" in lines[2]
    assert "| 93.00 ± 0.82 | 101 ± 1 |" in lines[2]  # a last-epoch run's two CIFAR-10 columns agree
    assert lines[2].endswith("| 0/3 (0–56%) |") and lines[3].endswith("| 3/3 (44–100%) |")
    assert "| darts | erm | no none | 3 | 3 | last epoch | 68.00 ± 15.75 | 60.00 | 54.00 |" in lines[3]
    assert lines[-1].startswith("| optimal (benchmark) |") and "94.37" in lines[-1] and "47.31" in lines[-1]
    write_table_csv(rows, tmp_path / "t.csv", best)
    table = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert [r["method"] for r in table] == ["gaea-darts", "darts", "optimal"]
    assert float(table[1]["cifar10_mean"]) == pytest.approx(68.0)
    assert float(table[2]["cifar10_mean"]) == 94.37
    assert table[0]["select"] == "last" and float(table[0]["last_cifar10_mean"]) == pytest.approx(93.0)
    assert (table[1]["collapsed"], float(table[1]["collapse_rate"]), float(table[1]["cifar10_worst"])) == ("3", 1.0, 54.0)


@pytest.mark.parametrize("k, n, low, high", [(0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634),
                                             (0, 4, 0.0, 0.4899), (4, 4, 0.5101, 1.0)])
def test_wilson_interval_matches_known_values(k, n, low, high):
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_needs_trials():
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_first_collapse_epoch(fake_grid):
    _, paths = fake_grid
    runs = [load_run(p) for p in paths]
    assert first_collapse_epoch(runs[0]) is None  # gaea-darts: the convolution cell throughout
    assert first_collapse_epoch(runs[3]) == 1  # darts: the 5-skip cell from its first epoch
    log = [dict(r, genotype=CONV) for r in runs[3].log[:2]] + runs[3].log[2:]
    assert first_collapse_epoch(dataclasses.replace(runs[3], log=log)) == 3

def test_best_epoch_rows_show_the_last_epoch_beside_it(fake_grid):
    _, paths = fake_grid
    for path in paths:  # as a bilevel run with best-epoch selection leaves it: epoch 2 was best on valid
        result = json.loads((path / "result.json").read_text())
        result.update(select="best", selected_epoch=2, last={"genotype": result["genotype"], "oracle": result["oracle"]},
                      oracle={"cifar10": 85.0, "cifar100": 65.0, "ImageNet16-120": 35.0})
        (path / "result.json").write_text(json.dumps(result))
    gaea = aggregate([load_run(p) for p in paths])[0]
    assert gaea["select"] == "best"
    assert gaea["cifar10"] == pytest.approx((85.0, 0.0)) and gaea["last_cifar10"][0] == pytest.approx(93.0)
    assert "| best valid epoch | 85.00 ± 0.00 | 85.00 | 85.00 | 65.00 ± 0.00 | 35.00 ± 0.00 | 93.00 ± 0.82 |" in format_table_md([gaea])


def test_plots_are_written(fake_grid, tmp_path):
    _, paths = fake_grid
    groups = group_runs([load_run(p) for p in paths])
    plot_entropy(groups, tmp_path / "entropy.png")
    plot_oracle(groups, tmp_path / "oracle.png")
    plot_skip_strip(groups, tmp_path / "skips.png")
    for name in ("entropy.png", "oracle.png", "skips.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_finished_runs_are_reused_not_rerun(fake_grid):
    out, paths = fake_grid
    grid = build_grid(["gaea-darts", "darts"], ["erm"], [0, 1, 2])
    seen = []
    # The data path does not exist: any run that was not reused would fail to load it.
    reused = run_grid(grid, out, "cpu", "data", "table.csv", torch.device("cpu"),
                      on_run_start=lambda i, run, was_reused: seen.append(was_reused))
    assert seen == [True] * 6 and sorted(reused) == sorted(paths)


def test_a_run_with_other_settings_is_not_silently_reused(fake_grid):
    out, _ = fake_grid
    with pytest.raises(ConfigError, match="other settings"):
        run_grid(build_grid(["darts"], ["erm"], [0]), out, "cpu-deep", "data", None, torch.device("cpu"))


def test_default_grid_is_the_papers():
    grid = build_grid()
    assert len(grid) == 18
    assert {(r.method, r.objective) for r in grid} == set(DEFAULT_GRID)
    assert {("gdas", "erm"), ("gaea-gdas", "erm")}.isdisjoint({(r.method, r.objective) for r in grid})
    assert len(build_grid(["darts", "gaea-darts"], ["bilevel"], [0, 1, 2])) == 6
    with pytest.raises(ConfigError, match="unknown method"):
        build_grid(["enas"])
    assert grid_config(GridRun("gdas", "bilevel", 0), "cpu", "d", None).exclude_none is False
    assert grid_config(GridRun("darts", "erm", 0), "cpu", "d", None).exclude_none is True


def test_a_tiny_real_grid_end_to_end(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=3, per_class=8)
    table_path = write_full_nb201_table(tmp_path / "table.csv")
    grid = build_grid(["gaea-darts"], ["erm"], [0, 1])
    tiny = dict(channels=2, cells=1, epochs=2, batch_size=12, subset=None, resize=8)
    paths = run_grid(grid, tmp_path / "out", "cpu", str(data), str(table_path), torch.device("cpu"), **tiny)
    written = write_report(tmp_path / "out", paths, NB201Table.load(table_path))
    assert {p.name for p in written} == {"table.md", "table.csv", "entropy.png", "skips.png", "oracle.png"}
    assert "| gaea-darts | erm | no none | 2 |" in (tmp_path / "out" / "table.md").read_text()


def test_report_command_draws_a_single_run(fake_grid, capsys):
    _, paths = fake_grid
    assert main(["report", str(paths[0])]) == 0
    assert (paths[0] / "entropy.png").read_bytes().startswith(PNG_MAGIC)
    assert (paths[0] / "oracle.png").exists()
    assert main(["report", str(paths[0].parent)]) == 2
    assert "not a gaeanas run directory" in capsys.readouterr().err


def test_report_command_draws_several_runs_together(fake_grid, capsys):
    out, paths = fake_grid
    assert main(["report", *map(str, paths)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["report", *map(str, paths), "--out", str(out / "both")]) == 0
    assert (out / "both" / "entropy.png").read_bytes().startswith(PNG_MAGIC)


def test_op_entropy_averages_the_rows_of_operation_weights_only():
    from gaeanas.report import op_entropy

    record = {"arch_weights": {"normal": [[0.5, 0.5], [1.0, 0.0]], "reduce": [[0.25] * 4],
                               "normal_edges2": [0.9, 0.1]}}  # 1-D edge weights are not operation weights
    assert op_entropy(record) == pytest.approx((np.log(2) + 0.0 + np.log(4)) / 3)


def test_report_only_uses_the_finished_runs(fake_grid, capsys):
    out, paths = fake_grid
    code = main(["reproduce", "nb201", "--methods", "gaea-darts,darts", "--objectives", "erm,bilevel",
                 "--data", "unused", "--benchmark", str(write_full_nb201_table(out / "t.csv")),
                 "--out", str(out), "--report-only", "--device", "cpu"])
    assert code == 0
    assert "reporting the 6 of 12 runs" in capsys.readouterr().out
    assert (out / "table.md").read_text().count("| erm |") == 2
    assert (out / "skips.png").read_bytes().startswith(PNG_MAGIC)


def test_seed_ranges_reach_the_grid(fake_grid, capsys):
    out, _ = fake_grid
    code = main(["reproduce", "nb201", "--methods", "gaea-darts", "--objectives", "erm", "--seeds", "0-1,2",
                 "--data", "unused", "--benchmark", str(write_full_nb201_table(out / "t.csv")),
                 "--out", str(out), "--report-only", "--device", "cpu"])
    assert code == 0 and "reporting the 3 of 3 runs" in capsys.readouterr().out


@pytest.mark.parametrize("text, seeds", [("0-9", list(range(10))), ("0,2,5-7", [0, 2, 5, 6, 7]), ("3", [3]),
                                         ("1-3,2-4", [1, 2, 3, 4])])
def test_parse_seeds(text, seeds):
    from gaeanas.cli import parse_seeds

    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [("5-2", "runs backwards"), ("a", "seeds like"), ("1,,2", "empty items"),
                                           ("-1", "seeds like")])
def test_bad_seeds_are_refused(text, message, capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "nb201", "--seeds", text, "--data", "d", "--benchmark", "b"])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("x, y", [([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]), ([1, 2, 2, 3], [1, 3, 2, 2]),
                                  ([10, 10, 10, 80, 90, 93], [10.5, 11, 9, 60, 75, 70]), ([3, 1, 2], [1, 2, 3])])
def test_rank_correlations_match_scipy(x, y):
    stats = pytest.importorskip("scipy.stats")
    from gaeanas.report import kendall_tau, spearman_rho

    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y)[0])
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def test_rank_correlations_known_values():
    from gaeanas.report import discordant_pairs, kendall_tau, spearman_rho

    assert kendall_tau([1, 2, 3], [1, 2, 3]) == 1.0 and kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    assert spearman_rho([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert discordant_pairs([1, 2, 3, 9], [1, 2, 4, 3]) == [(2, 3)]


TINY_GRID = dict(channels=2, cells=1, epochs=3, batch_size=12, subset=None, resize=8)


def test_workers_run_the_grid_and_a_killed_worker_loses_only_its_run(tmp_path):
    import threading

    from gaeanas.reproduce import run_grid_in_workers

    data = make_image_folder(tmp_path / "data", classes=3, per_class=8)
    table_path = str(write_full_nb201_table(tmp_path / "table.csv"))
    grid = build_grid(["gaea-darts"], ["erm"], [0, 1, 2])
    out = tmp_path / "out"
    victim = grid[1]

    def kill_once_started(event, job, detail):
        if event == "start" and job.name == victim.name:
            def kill():
                while not (out / "runs" / job.name / "config.json").is_file() and detail.is_alive():
                    pass
                detail.kill()
            threading.Thread(target=kill, daemon=True).start()

    outcomes = run_grid_in_workers(grid, out, "cpu", str(data), table_path, torch.device("cpu"), 2,
                                   kill_once_started, **TINY_GRID)
    codes = {o.name: o.exitcode for o in outcomes}
    assert codes[victim.name] < 0 and codes[grid[0].name] == 0 and codes[grid[2].name] == 0
    assert not (out / "runs" / victim.name / "result.json").exists()
    assert "finished" in (out / "logs" / f"{grid[0].name}.txt").read_text()
    again = run_grid_in_workers(grid, out, "cpu", str(data), table_path, torch.device("cpu"), 2, **TINY_GRID)
    assert [(o.name, o.exitcode) for o in again] == [(victim.name, 0)]  # only the killed run ran again
    serial = run_grid(build_grid(["gaea-darts"], ["erm"], [1]), tmp_path / "serial", "cpu", str(data), table_path,
                      torch.device("cpu"), **TINY_GRID)[0]
    parallel = json.loads((out / "runs" / victim.name / "result.json").read_text())
    assert parallel["genotype"] == json.loads((serial / "result.json").read_text())["genotype"]


def test_workers_refuse_a_folder_with_other_settings(fake_grid):
    from gaeanas.reproduce import run_grid_in_workers

    out, _ = fake_grid
    with pytest.raises(ConfigError, match="other settings"):
        run_grid_in_workers(build_grid(["darts"], ["erm"], [0]), out, "cpu-deep", "data", None, torch.device("cpu"), 2)


def test_workers_flag_reaches_the_pool_and_is_refused_with_report_only(fake_grid, capsys):
    out, _ = fake_grid
    table = str(write_full_nb201_table(out / "t.csv"))
    assert main(["reproduce", "nb201", "--methods", "gaea-darts", "--objectives", "erm", "--data", "data",
                 "--benchmark", table, "--out", str(out), "--workers", "2", "--device", "cpu"]) == 0
    assert "reporting" not in capsys.readouterr().out  # all three runs were finished: nothing started, table written
    assert main(["reproduce", "nb201", "--data", "d", "--benchmark", table, "--workers", "2", "--report-only"]) == 2
    assert "--workers and --ray run the grid" in capsys.readouterr().err


def test_ray_runs_the_grid_one_task_per_run(tmp_path):
    ray = pytest.importorskip("ray")
    from gaeanas.reproduce import run_grid_in_workers
    from gaeanas.runner import Launch

    data = make_image_folder(tmp_path / "data", classes=3, per_class=8)
    table_path = str(write_full_nb201_table(tmp_path / "table.csv"))
    grid = build_grid(["gaea-darts"], ["erm"], [0])
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        events = []
        outcomes = run_grid_in_workers(grid, tmp_path / "out", "cpu", str(data), table_path, "cpu",
                                       Launch(ray="local"), lambda e, job, d: events.append((e, job.name)),
                                       **TINY_GRID)
    finally:
        ray.shutdown()
    assert sorted((o.name, o.exitcode) for o in outcomes) == [(r.name, 0) for r in grid]
    assert sorted(events) == sorted([("start", r.name) for r in grid] + [("end", r.name) for r in grid])
    assert all((tmp_path / "out" / "runs" / r.name / "result.json").is_file() for r in grid)


def test_ray_missing_says_how_to_install_it(monkeypatch):
    import sys

    from gaeanas.runner import run_on_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'gaeanas\[ray\]'"):
        run_on_ray([], "local", "logs")


@pytest.mark.parametrize("flags, message", [(["--workers", "2", "--ray", "auto"], "not both"),
                                            (["--ray-cpus", "2"], "--ray-cpus goes with --ray"),
                                            (["--ray", "auto", "--report-only"], "--report-only runs nothing")])
def test_launch_flags_that_cannot_act_are_refused(flags, message, tmp_path, capsys):
    table = str(write_full_nb201_table(tmp_path / "t.csv"))
    assert main(["reproduce", "nb201", "--data", "d", "--benchmark", table, *flags]) == 2
    assert message in capsys.readouterr().err


def test_launch_flags_reach_the_launch():
    import argparse

    from gaeanas.cli import launch_from_args
    from gaeanas.runner import Launch

    args = lambda **kw: argparse.Namespace(**{"workers": 1, "ray": None, "ray_cpus": None, "device": "auto", **kw})  # noqa: E731
    assert launch_from_args(args()) is None
    assert launch_from_args(args(workers=3)) == Launch(workers=3)
    assert launch_from_args(args(ray="auto", ray_cpus=2.0)) == Launch(ray="auto", ray_cpus=2.0, ray_gpus=0.0)
    assert launch_from_args(args(ray="auto", device="cuda")) == Launch(ray="auto", ray_cpus=1.0, ray_gpus=1.0)
