"""docs/parity.md and the recipes agree: each row's default is what a search resolves to, and each setting a
method reads or its recipe sets has a row."""
import re
from pathlib import Path

import pytest

from gaeanas.methods import METHODS
from gaeanas.search import SearchConfig

from synth import working_pairs

PARITY = Path(__file__).resolve().parents[1] / "docs" / "parity.md"
PAIRS = working_pairs()


def parity_rows() -> list[dict[str, str]]:
    """The rows of the parity table, as {column: cell}."""
    lines = [line for line in PARITY.read_text().splitlines() if line.startswith("| `--")]
    header = ["flag", "method", "space", "paper", "reference", "ours", "notes"]
    return [dict(zip(header, (cell.strip() for cell in line.strip().strip("|").split(" | ")))) for line in lines]


def expand(row: dict[str, str]) -> list[tuple[str, str, str]]:
    """(field, space, method) for each method and space the row names."""
    field = row["flag"].strip("`").removeprefix("--").replace("-", "_")
    methods = [m.strip() for m in row["method"].split(",")]
    spaces = [s.strip() for s in row["space"].split(",")]
    return [(field, space, method) for space in spaces for method in methods]


def documented_value(cell: str):
    """The first backticked value of an "our default" cell: on/off, a number, or a word."""
    text = re.search(r"`([^`]+)`", cell).group(1)
    if text in ("on", "off"):
        return text == "on"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


ROWS = [(field, space, method, documented_value(row["ours"]))
        for row in parity_rows() for field, space, method in expand(row)]


def test_the_table_is_read():
    assert len(ROWS) > 100
    unknown = {(space, method) for _, space, method, _ in ROWS} - set(PAIRS)
    assert not unknown, f"docs/parity.md names pairs that are not registered: {sorted(unknown)}"


@pytest.mark.parametrize("field, space, method, value", ROWS, ids=[f"{f}-{s}-{m}" for f, s, m, _ in ROWS])
def test_each_row_is_what_a_search_resolves_to(field, space, method, value):
    resolved = SearchConfig(space=space, method=method).resolved()
    assert getattr(resolved, field) == value, f"docs/parity.md says {value!r}"


@pytest.mark.parametrize("space, method", PAIRS)
def test_each_setting_of_a_recipe_has_a_row(space, method):
    documented = {field for field, s, m, _ in ROWS if (s, m) == (space, method)}
    recipe = set(METHODS[method].settings()) | set(METHODS[method].recipe(space))
    always = {"epochs", "batch_size", "lr", "lr_min", "lr_cycle", "weight_decay", "nesterov", "update_order",
              "select", "warmup_epochs"}
    missing = sorted((recipe | always) - documented)
    assert not missing, f"docs/parity.md has no row for {missing} of {method} on {space}"


def test_no_row_is_listed_twice():
    keys = [(field, space, method) for field, space, method, _ in ROWS]
    assert len(keys) == len(set(keys))
