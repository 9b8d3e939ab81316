"""NAS-Bench-201 lookup on a small table the test writes."""
import pytest

from gaeanas.errors import BenchmarkError, GenotypeError
from gaeanas.nasbench import NB201Table
from gaeanas.spaces.nb201 import Genotype

HEADER = ("CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
          "ArchitectureString,UniqueString\n")
CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


@pytest.fixture
def table_path(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text(HEADER + f"93.76,71.1,41.4,{CONV},u1\n" + f"54.3,15.6,16.3,{SKIP},u2\n")
    return path


def test_query_by_string_and_genotype(table_path):
    table = NB201Table.load(table_path)
    assert len(table) == 2
    assert table.query(CONV) == {"cifar10": 93.76, "cifar100": 71.1, "ImageNet16-120": 41.4}
    assert table.query(Genotype.parse(SKIP))["cifar10"] == 54.3
    assert table.best() == {"cifar10": 93.76, "cifar100": 71.1, "ImageNet16-120": 41.4}


def test_missing_architecture_is_a_clear_error(table_path):
    other = CONV.replace("nor_conv_3x3~2", "none~2")
    with pytest.raises(BenchmarkError, match="is not in the benchmark table"):
        NB201Table.load(table_path).query(other)


def test_malformed_string_is_a_genotype_error(table_path):
    with pytest.raises(GenotypeError, match="malformed"):
        NB201Table.load(table_path).query("|nor_conv_3x3~0|")


def test_bad_files(tmp_path):
    with pytest.raises(BenchmarkError, match="not found"):
        NB201Table.load(tmp_path / "missing.csv")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(BenchmarkError, match="missing column"):
        NB201Table.load(wrong)
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + f"oops,71.1,41.4,{CONV},u1\n")
    with pytest.raises(BenchmarkError, match="line 2"):
        NB201Table.load(bad)
