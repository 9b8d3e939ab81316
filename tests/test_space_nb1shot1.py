"""NAS-Bench-1Shot1 spaces 1-3: the 1Shot1 code's parents and wiring, discretisation, the NAS-Bench-101 cell and its
hash, regret per epoch, and refusals."""
import itertools
import json

import numpy as np
import pytest
import torch

from gaeanas.cli import main
from gaeanas.errors import BenchmarkError, ConfigError, GenotypeError
from gaeanas.nasbench.nb101 import NB101Table
from gaeanas.report import report_run
from gaeanas.rundir import read_log
from gaeanas.search import SearchConfig, build_search_model, run_search
from gaeanas.spaces import SPACES
from gaeanas.spaces.nb1shot1 import OPS, SPECS, Genotype, SearchCell, discretise

from synth import make_image_folder

MP, C3, C1 = "maxpool3x3", "conv3x3-bn-relu", "conv1x1-bn-relu"


def test_spaces_match_the_1shot1_code():
    """num_parents_per_node and test_min_error of nasbench_analysis/search_spaces/search_space_{1,2,3}.py."""
    assert SPECS[1].parents == (1, 2, 2, 2, 2) and SPECS[1].best_test_error == pytest.approx(0.05448716878890991)
    assert SPECS[2].parents == (1, 1, 2, 2, 3) and SPECS[2].best_test_error == pytest.approx(0.057592153549194336)
    assert SPECS[3].parents == (1, 1, 1, 2, 2, 2) and SPECS[3].best_test_error == pytest.approx(0.05338543653488159)
    assert all(sum(spec.parents) <= 9 for spec in SPECS.values())  # NAS-Bench-101's edge limit


@pytest.mark.parametrize("space, weighted", [(1, [3, 4]), (2, [2, 3, 4]), (3, [2, 3, 4, 5])])
def test_parent_weights_exist_where_the_1shot1_code_has_them(space, weighted):
    """1Shot1's alphas_inputs: nodes 3.. in space 1 (node 2 takes both its candidates), nodes 2.. elsewhere."""
    shapes = SPACES[f"nb1shot1-s{space}"].arch_shapes(OPS, None)
    nodes = SPECS[space].nodes
    assert shapes == {"ops": (nodes, 3), **{f"inputs{m}": (m,) for m in weighted}, "output": (nodes + 1,)}


def test_discretise_takes_argmax_ops_and_top_k_parents():
    probs = {"ops": torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]]),
             "inputs2": torch.tensor([0.3, 0.7]), "inputs3": torch.tensor([0.5, 0.2, 0.3]),
             "inputs4": torch.tensor([0.1, 0.4, 0.1, 0.4]), "output": torch.tensor([0.3, 0.1, 0.25, 0.05, 0.3])}
    genotype = discretise(SPECS[2], probs, OPS)
    assert genotype.ops == (C1, MP, C3, C1)
    assert genotype.parents == ((0,), (1,), (0, 2), (1, 3), (0, 2, 4))
    assert str(genotype) == f"{C1}~0|{MP}~1|{C3}~0~2|{C1}~1~3|output~0~2~4"
    assert Genotype.parse(str(genotype), 2) == genotype


@pytest.mark.parametrize("text, match", [
    (f"{C3}~0|{C3}~0~1|{C3}~0~1|{C3}~0~1", "last token"),              # no output
    (f"{C3}~0|{C3}~0~1|{C3}~0~1|{C3}~0~1|output~0", "the output takes 2"),
    (f"{C3}~0|{C3}~0~1|{C3}~0~3|{C3}~0~1|output~0~1", "node 3 takes 2"),  # parent after the node
    (f"{C3}~0|{C3}~0~1|{C3}~1~1|{C3}~0~1|output~0~1", "distinct"),
    (f"sep_conv_3x3~0|{C3}~0~1|{C3}~0~1|{C3}~0~1|output~0~1", "unknown operation"),
    (f"{C3}~0|{C3}~0~x|{C3}~0~1|{C3}~0~1|output~0~1", "bad token"),
    (f"{C3}~0|{C3}~0~1|{C3}~0~1|output~0~1", "4 nodes"),
])
def test_malformed_genotypes_are_named(text, match):
    with pytest.raises(GenotypeError, match=match):
        Genotype.parse(text, 1)


def test_nb101_cell_keeps_the_outputs_ancestors_and_pads_to_seven_vertices():
    # node 3 is a loose end (nothing downstream takes it): its edges go, as in 1Shot1's create_nasbench_adjacency_matrix
    genotype = Genotype(1, (C3, C1, MP, C3), ((0,), (0, 1), (0, 1), (1, 2), (2, 4)))
    matrix, ops = genotype.nb101()
    want = np.zeros((7, 7), dtype=int)
    for a, b in [(0, 1), (0, 2), (1, 2), (1, 4), (2, 4), (2, 6), (4, 6)]:
        want[a, b] = 1
    assert (matrix == want).all()
    assert ops == ["input", C3, C1, MP, C3, C1, "output"]  # vertex 5: 1Shot1's unused conv1x1
    matrix3, ops3 = Genotype(3, (C3, C1, MP, C3, C1), ((0,), (1,), (2,), (0, 3), (1, 4), (4, 5))).nb101()
    assert matrix3.shape == (7, 7) and ops3 == ["input", C3, C1, MP, C3, C1, "output"]
    want3 = np.zeros((7, 7), dtype=int)
    for a, b in [(0, 1), (1, 2), (2, 3), (0, 4), (3, 4), (1, 5), (4, 5), (4, 6), (5, 6)]:
        want3[a, b] = 1
    assert (matrix3 == want3).all()  # space 3 has 5 nodes: no padding


def test_hashes_ignore_loose_ends_and_node_order_but_not_operations():
    base = Genotype(1, (C3, C1, MP, C3), ((0,), (0, 1), (0, 1), (1, 2), (2, 4)))
    other_loose_end = Genotype(1, (C3, C1, C1, C3), ((0,), (0, 1), (0, 2), (1, 2), (2, 4)))
    assert base.nb101_hash() == other_loose_end.nb101_hash()
    assert base.nb101_hash() != Genotype(1, (C1, C1, MP, C3), base.parents).nb101_hash()
    # nodes 1 and 2 swapped: both children of the input, both feeding node 3
    a = Genotype(2, (C3, MP, C1, C3), ((0,), (0,), (1, 2), (0, 3), (0, 3, 4)))
    b = Genotype(2, (MP, C3, C1, C3), a.parents)
    assert a.nb101_hash() == b.nb101_hash()
    assert a.nb101_hash() != Genotype(2, (C3, C3, C1, C3), a.parents).nb101_hash()


def all_genotypes(space: int):
    spec = SPECS[space]
    choices = [[tuple(range(node))] if not spec.weighted(node) else list(itertools.combinations(range(node), k))
               for node, k in zip(range(1, spec.output + 1), spec.parents)]
    for ops in itertools.product(OPS, repeat=spec.nodes):
        for parents in itertools.product(*choices):
            yield Genotype(space, ops, parents)


def write_table(path, space: int) -> dict[str, float]:
    """A made-up NAS-Bench-101 table over every cell of a space: test accuracy from the hash, so each differs."""
    accuracies = {}
    for genotype in all_genotypes(space):
        key = genotype.nb101_hash()
        test = 0.80 + 0.15 * int(key[:6], 16) / 0xFFFFFF
        accuracies[key] = (test, test - 0.01)
    NB101Table(accuracies).save(path)
    return {k: v[0] for k, v in accuracies.items()}


def test_regret_is_the_test_error_above_the_spaces_best(tmp_path):
    genotype = Genotype(1, (C3, C1, MP, C3), ((0,), (0, 1), (0, 1), (1, 2), (2, 4)))
    NB101Table({genotype.nb101_hash(): (0.9, 0.91)}).save(tmp_path / "t.json")
    scores = SPACES["nb1shot1-s1"].load_benchmark(str(tmp_path / "t.json"))(genotype)
    assert scores == pytest.approx({"test_accuracy": 90.0, "validation_accuracy": 91.0,
                                    "test_regret": 0.1 - 0.05448716878890991})
    with pytest.raises(BenchmarkError, match="not in the table"):
        SPACES["nb1shot1-s1"].load_benchmark(str(tmp_path / "t.json"))(Genotype(1, (C1,) * 4, genotype.parents))


def test_a_missing_nb101_file_names_the_one_wanted(tmp_path):
    with pytest.raises(BenchmarkError, match="nasbench_only108.tfrecord"):
        SPACES["nb1shot1-s2"].load_benchmark(str(tmp_path / "nowhere.tfrecord"))


def test_the_cell_wiring_follows_the_1shot1_code():
    torch.manual_seed(0)
    cell = SearchCell(SPECS[1], c_in=6, c=4, ops=OPS).eval()
    x = torch.randn(2, 6, 5, 5)
    one_hot = lambda n, i: torch.nn.functional.one_hot(torch.tensor(i), n).float()  # noqa: E731
    from gaeanas.relax import Mixing
    mixings = {"ops": Mixing(torch.stack([one_hot(3, 2), one_hot(3, 0), one_hot(3, 1), one_hot(3, 1)])),
               "inputs3": Mixing(torch.full((3,), 1 / 3)), "inputs4": Mixing(torch.full((4,), 1 / 4)),
               "output": Mixing(one_hot(5, 0))}
    with torch.no_grad():
        assert torch.allclose(cell(x, mixings), cell.output_projection(x))  # only the input's projection
        mixings["output"] = Mixing(torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))
        node1 = cell.node_ops[0].candidates[2](cell.projections[0](x))  # conv1x1 of the projected input
        node2 = cell.node_ops[1].candidates[0](cell.projections[1](x) + node1)  # max-pool of the summed parents
        out = cell(x, mixings)
        assert torch.allclose(out[:, 4:8], node2, atol=1e-6) and out[:, :4].abs().max() == 0
        assert out.shape == (2, 16, 5, 5)


def test_pcdarts_sends_a_quarter_of_the_channels_through_the_ops():
    model = build_search_model(SearchConfig(space="nb1shot1-s1", method="pcdarts", channels=8, cells=1,
                                            epochs=2).resolved(), num_classes=3)
    conv = model.net.layers[0].node_ops[0].edge.candidates[1][0]
    assert conv.in_channels == 2 and conv.out_channels == 2
    with pytest.raises(ConfigError, match="multiple of 4"):
        build_search_model(SearchConfig(space="nb1shot1-s1", method="pcdarts", channels=6).resolved(), 3)


@pytest.mark.parametrize("method", ["gdas", "gaea-gdas"])
def test_hard_sampling_methods_are_refused(method):
    with pytest.raises(ConfigError, match="NAS-Bench-1Shot1"):
        SearchConfig(space="nb1shot1-s3", method=method).resolved()


def test_exclude_none_is_refused_without_a_none_op():
    with pytest.raises(ConfigError, match="--exclude-none does not apply to space 'nb1shot1-s1'"):
        SearchConfig(space="nb1shot1-s1", method="darts", exclude_none=True).resolved()


def test_recipes_on_1shot1():
    pc = SearchConfig(space="nb1shot1-s1", method="pcdarts").resolved()
    gaea = SearchConfig(space="nb1shot1-s1", method="gaea-pcdarts").resolved()
    assert (pc.arch_lr, pc.warmup_epochs, pc.batch_size, pc.epochs, pc.select) == (3e-4, 0, 96, 50, "last")
    assert (gaea.arch_lr, gaea.warmup_epochs, gaea.objective) == (0.1, 0, "bilevel")


def test_a_search_logs_regret_each_epoch_and_keeps_the_nb101_cell(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")
    table = tmp_path / "nb101.json"
    test_acc = write_table(table, 1)
    code = main(["search", "--space", "nb1shot1-s1", "--method", "gaea-pcdarts", "--data", str(data),
                 "--benchmark", str(table), "--epochs", "2", "--channels", "4", "--cells", "1",
                 "--batch-size", "12", "--out", str(tmp_path / "run"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    log = read_log(tmp_path / "run")
    for record in log:
        genotype = Genotype.parse(record["genotype"], 1)
        want = 1 - test_acc[genotype.nb101_hash()] - SPECS[1].best_test_error
        assert record["oracle"]["test_regret"] == pytest.approx(want)
        assert f"regret {record['oracle']['test_regret']:.4f}" in out
        assert record["edge_entropy"] > 0 and record["entropy"] > 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    genotype = Genotype.parse(result["genotype"], 1)
    matrix, ops = genotype.nb101()
    assert result["nb101"] == {"matrix": matrix.tolist(), "ops": ops, "hash": genotype.nb101_hash()}
    assert result["select"] == "last" and result["genotype"] == log[-1]["genotype"]
    written = report_run(tmp_path / "run")
    assert [p.name for p in written] == ["entropy.png", "oracle.png"]


def test_a_search_without_the_table_runs(tmp_path):
    data = make_image_folder(tmp_path / "data")
    result = run_search(SearchConfig(space="nb1shot1-s3", method="darts", data=str(data), epochs=1, channels=2,
                                     cells=1, batch_size=12), tmp_path / "run")
    assert result.get("oracle") is None and len(result["nb101"]["hash"]) == 32


def test_reproduce_nb1shot1_runs_each_space_and_reports_their_cells(tmp_path, capsys):
    from gaeanas.reproduce import build_grid, run_grid, write_report

    default = build_grid(target="nb1shot1")
    assert len(default) == 24 and {r.space for r in default} == {"nb1shot1-s1", "nb1shot1-s2", "nb1shot1-s3"}
    assert {(r.method, r.objective) for r in default} == {("pcdarts", "bilevel"), ("gaea-pcdarts", "bilevel")}
    assert default[0].name == "nb1shot1-s1-pcdarts-bilevel-seed0"
    data = make_image_folder(tmp_path / "data", classes=3, per_class=8)
    grid = build_grid(["gaea-pcdarts"], ["bilevel"], [0], target="nb1shot1")
    tiny = dict(channels=4, cells=1, epochs=2, batch_size=12, subset=None, resize=8)
    paths = run_grid(grid, tmp_path / "out", "cpu", str(data), None, torch.device("cpu"), **tiny)
    written = write_report(tmp_path / "out", paths, None, "nb1shot1")
    assert {p.name for p in written} == {"table.md", *(f"entropy-nb1shot1-s{n}.png" for n in (1, 2, 3))}
    table = (tmp_path / "out" / "table.md").read_text()
    for path in paths:
        result = json.loads((path / "result.json").read_text())
        genotype = result["genotype"].replace("|", "\\|")
        assert f"| {path.name} | `{genotype}` | `{result['nb101']['hash']}` |" in table
    assert "| nb1shot1-s2 | gaea-pcdarts | bilevel | 1 | 2 | n/a |" in table
    code = main(["reproduce", "nb1shot1", "--data", str(data), "--seeds", "0", "--methods", "gaea-pcdarts",
                 "--objectives", "bilevel", "--out", str(tmp_path / "out"), "--report-only"])
    assert code == 0 and "nb1shot1-s3-gaea-pcdarts-bilevel-seed0" in capsys.readouterr().out


def test_reproduce_nb201_still_needs_its_table(tmp_path, capsys):
    code = main(["reproduce", "nb201", "--data", str(tmp_path), "--report-only"])
    assert code == 2 and "needs --benchmark" in capsys.readouterr().err


def test_method_recipes_name_the_registered_1shot1_spaces():
    from gaeanas.methods import METHODS
    from gaeanas.spaces.nb1shot1 import SPACE_NAMES

    assert set(SPACE_NAMES) == {name for name in SPACES if name.startswith("nb1shot1")}
    for method in ("pcdarts", "gaea-pcdarts"):
        assert set(METHODS[method].recipes) >= set(SPACE_NAMES)


def test_reproduce_nb1shot1_refuses_a_scale_it_does_not_have(tmp_path, capsys):
    code = main(["reproduce", "nb1shot1", "--scale", "cpu-deep", "--data", str(make_image_folder(tmp_path / "d")),
                 "--seeds", "0", "--out", str(tmp_path / "out")])
    assert code == 2 and "unknown scale 'cpu-deep' for nb1shot1-s1" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()
