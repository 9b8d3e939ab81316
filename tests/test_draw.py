"""Cell diagrams (the paper's Figure 3 style): files written, layout, and the `gaeanas draw` command."""
import json

import pytest

from gaeanas.cli import main
from gaeanas.draw import draw_genotype, node_positions
from gaeanas.spaces.darts_genotypes import DARTS_V2


def test_draw_writes_png_and_svg_for_both_cells(tmp_path):
    paths = draw_genotype(DARTS_V2, tmp_path / "figs" / "darts")
    assert [p.name for p in paths] == ["darts-normal.png", "darts-normal.svg", "darts-reduce.png", "darts-reduce.svg"]
    for path in paths:
        assert path.stat().st_size > 5000
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    normal, reduce = paths[1].read_text(), paths[3].read_text()
    assert normal.count("sep_conv_3x3") == 5 and "dil_conv_3x3" in normal and normal.count("skip_connect") == 2
    assert reduce.count("max_pool_3x3") == 5 and "reduction cell" in reduce


def test_layout_puts_inputs_left_and_the_output_right():
    pos = node_positions()
    assert set(pos) == {"c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "c_{k}"}
    xs = {name: x for name, (x, _) in pos.items()}
    assert xs["c_{k-2}"] == xs["c_{k-1}"] < xs["0"] < xs["1"] < xs["2"] < xs["3"] < xs["c_{k}"]
    assert pos["c_{k-2}"][1] > pos["c_{k-1}"][1]


def test_draw_accepts_a_run_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(json.dumps({"genotype": str(DARTS_V2)}))
    assert len(draw_genotype(str(run), tmp_path / "cell")) == 4


def test_cli_draw(tmp_path, capsys, monkeypatch):
    assert main(["draw", "PC_DARTS", "--out", str(tmp_path / "pc")]) == 0
    out = capsys.readouterr().out
    assert out.count("wrote") == 4 and (tmp_path / "pc-reduce.svg").is_file()
    monkeypatch.chdir(tmp_path)
    assert main(["draw", "DARTS_V2"]) == 0
    assert (tmp_path / "DARTS_V2-normal.png").is_file()


@pytest.mark.parametrize("spec, match", [
    ("DARTS_V3", "'DARTS_V3' is not a published genotype"),
    ("cell.json", "cell.json"),
])
def test_cli_draw_errors(tmp_path, capsys, monkeypatch, spec, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cell.json").write_text('{"normal": [["sep_conv_3x3", 0]], "normal_concat": [2]}')
    assert main(["draw", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gaeanas: error:") and match in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.png"))
