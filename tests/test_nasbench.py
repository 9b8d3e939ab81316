"""NAS-Bench-201 lookup, and the checks on the table file, on synthetic tables the tests write."""
import gzip
import time

import pytest

from gaeanas.errors import BenchmarkError, GenotypeError
from gaeanas.nasbench import NB201Table
from gaeanas.nasbench.nb201 import SPACE_SIZE
from gaeanas.spaces.nb201 import Genotype

from synth import write_full_nb201_table

CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


@pytest.fixture(scope="module")
def full_lines(tmp_path_factory):
    """The lines of the full synthetic table (header first), each without its newline."""
    path = write_full_nb201_table(tmp_path_factory.mktemp("nb201") / "table.csv")
    return path.read_text().splitlines()


def _write(tmp_path, lines, end="\n"):
    path = tmp_path / "table.csv"
    path.write_text("\n".join(lines) + end)
    return path


def _line_of(lines, arch):
    """The 1-based line number of `arch`'s row."""
    return next(i for i, line in enumerate(lines, start=1) if f",{arch}," in line)


def test_full_table_loads_and_answers_queries(tmp_path):
    table = NB201Table.load(write_full_nb201_table(tmp_path / "table.csv"))
    assert len(table) == SPACE_SIZE == 15_625
    assert table.query(CONV) == {"cifar10": 92.0, "cifar100": 68.0, "ImageNet16-120": 44.0}
    assert table.query(Genotype.parse(SKIP))["cifar10"] == 80.0
    assert table.best() == {"cifar10": 92.0, "cifar100": 68.0, "ImageNet16-120": 44.0}


def test_architecture_strings_are_canonicalised(tmp_path, full_lines):
    lines = list(full_lines)
    at = _line_of(lines, CONV) - 1
    lines[at] = lines[at].replace(CONV, f"  {CONV} ")
    table = NB201Table.load(_write(tmp_path, lines))
    assert table.query(CONV)["cifar10"] == 92.0 and len(table) == SPACE_SIZE


def test_load_is_fast(tmp_path):
    path = write_full_nb201_table(tmp_path / "table.csv")
    start = time.perf_counter()
    NB201Table.load(path)
    assert time.perf_counter() - start < 1.0


def test_missing_architecture_is_a_clear_error():
    table = NB201Table({SKIP: (1.0, 2.0, 3.0)}, "t.csv")
    with pytest.raises(BenchmarkError, match="is not in the benchmark table t.csv"):
        table.query(CONV)


def test_malformed_string_is_a_genotype_error():
    with pytest.raises(GenotypeError, match="malformed"):
        NB201Table({SKIP: (1.0, 2.0, 3.0)}).query("|nor_conv_3x3~0|")


def test_missing_file_or_column(tmp_path):
    with pytest.raises(BenchmarkError, match="not found"):
        NB201Table.load(tmp_path / "missing.csv")
    with pytest.raises(BenchmarkError, match=rf"{tmp_path} is a folder, not a CSV table; --benchmark"):
        NB201Table.load(tmp_path)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(BenchmarkError, match=r"wrong\.csv is not a NAS-Bench-201 table: missing column.*"
                                             r"CIFAR10TestAccuracy200Epochs.*--benchmark"):
        NB201Table.load(wrong)


def test_missing_column_in_full_table(tmp_path, full_lines):
    lines = [",".join(line.split(",")[1:]) for line in full_lines]  # drop the CIFAR-10 column
    with pytest.raises(BenchmarkError, match=r"missing column\(s\) \['CIFAR10TestAccuracy200Epochs'\]"):
        NB201Table.load(_write(tmp_path, lines))


def test_truncated_mid_file(tmp_path, full_lines):
    with pytest.raises(BenchmarkError) as err:
        NB201Table.load(_write(tmp_path, full_lines[:15_601]))
    assert str(err.value) == (f"{tmp_path / 'table.csv'} holds 15,600 of the 15,625 NAS-Bench-201 architectures: "
                              "it looks truncated")


def test_header_only(tmp_path, full_lines):
    with pytest.raises(BenchmarkError, match="holds 0 of the 15,625"):
        NB201Table.load(_write(tmp_path, full_lines[:1]))


def test_cut_mid_line_at_the_end(tmp_path, full_lines):
    path = _write(tmp_path, full_lines)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(BenchmarkError, match=r"table\.csv ends mid-line: the file looks truncated$"):
        NB201Table.load(path)


def test_short_row_names_its_line(tmp_path, full_lines):
    lines = list(full_lines)
    lines[100] = lines[100].rsplit(",", 2)[0]  # cut mid-column, then a newline
    with pytest.raises(BenchmarkError, match=r"table\.csv, line 101 has 3 of the 5 columns"):
        NB201Table.load(_write(tmp_path, lines))


def test_gzip_file(tmp_path, full_lines):
    path = tmp_path / "table.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(full_lines) + "\n").encode()))
    with pytest.raises(BenchmarkError) as err:
        NB201Table.load(path)
    assert str(err.value).startswith(f"{path} is not a CSV table: it looks like gzip-compressed data; --benchmark")
    assert "\n" not in str(err.value)


def test_png_file(tmp_path):
    path = tmp_path / "table.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(BenchmarkError, match=r"table\.png is not a CSV table: it looks like a PNG image"):
        NB201Table.load(path)


def test_other_binary_and_non_utf8(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"CIFAR10\x00\x01\x02")
    with pytest.raises(BenchmarkError, match=r"t\.csv is not a CSV table: it looks like binary data"):
        NB201Table.load(path)
    path.write_bytes(b"CIFAR10TestAccuracy200Epochs\xff\xfe,x\n")
    with pytest.raises(BenchmarkError, match=r"t\.csv is not a CSV table: it is not UTF-8 text \(byte 28 is 0xff\)"):
        NB201Table.load(path)


def test_empty_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("")
    with pytest.raises(BenchmarkError, match=r"t\.csv is empty"):
        NB201Table.load(path)


@pytest.mark.parametrize("value, match", [
    ("oops", r"line 7: CIFAR10TestAccuracy200Epochs is 'oops', not a number"),
    ("", r"line 7: CIFAR10TestAccuracy200Epochs is '', not a number"),
    ("nan", r"line 7: CIFAR10TestAccuracy200Epochs is 'nan', not a percentage in 0..100"),
    ("inf", r"line 7: CIFAR10TestAccuracy200Epochs is 'inf', not a percentage in 0..100"),
    ("100.5", r"line 7: CIFAR10TestAccuracy200Epochs is '100.5', not a percentage in 0..100"),
    ("-1", r"line 7: CIFAR10TestAccuracy200Epochs is '-1', not a percentage in 0..100"),
])
def test_bad_accuracy_names_line_and_column(tmp_path, full_lines, value, match):
    lines = list(full_lines)
    lines[6] = value + lines[6][lines[6].index(","):]
    with pytest.raises(BenchmarkError, match=match):
        NB201Table.load(_write(tmp_path, lines))


def test_bad_architecture_names_its_line(tmp_path, full_lines):
    lines = list(full_lines)
    lines[9] = lines[9].replace("~2|", "~7|")
    with pytest.raises(BenchmarkError, match=r"table\.csv, line 10: malformed NAS-Bench-201 string"):
        NB201Table.load(_write(tmp_path, lines))
    lines = list(full_lines)
    lines[9] = lines[9].replace("|,", "|+|none~0|,")
    with pytest.raises(BenchmarkError, match=r"line 10: malformed NAS-Bench-201 string .*'\+'-separated nodes"):
        NB201Table.load(_write(tmp_path, lines))


def test_duplicate_architecture(tmp_path, full_lines):
    lines = list(full_lines)
    conv_line = _line_of(lines, CONV)
    lines[conv_line - 1] = lines[conv_line - 1].replace(CONV, SKIP)
    skip_line = _line_of(lines, SKIP)
    first, second = sorted((skip_line, conv_line))
    with pytest.raises(BenchmarkError, match=rf"line {second} repeats the architecture of line {first}: "):
        NB201Table.load(_write(tmp_path, lines))


def test_too_large_file(tmp_path, monkeypatch):
    from gaeanas.nasbench import nb201
    monkeypatch.setattr(nb201, "_MAX_TABLE_BYTES", 1000)
    path = write_full_nb201_table(tmp_path / "table.csv")
    with pytest.raises(BenchmarkError, match=r"table\.csv is .* MiB, too large to be a CSV table"):
        NB201Table.load(path)
