"""DARTS-space genotypes (Liu et al., ICLR 2019): the cell format, JSON round trip, and published cells."""
from __future__ import annotations

import ast
import json
import os
import random
import re
from pathlib import Path
from typing import Any, NamedTuple

from ..data.textfiles import read_text
from ..errors import GenotypeError

OPS: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                        "dil_conv_3x3", "dil_conv_5x5")
STEPS = 4  # intermediate nodes per cell; node k (k = 2..5) takes two of the inputs 0..k-1
NODES = 2 + STEPS  # nodes 0..5 of a cell: two inputs, then the intermediate nodes
_MAX_TEXT = 64 * 1024  # characters (bytes for a file); published genotypes take about 500
_SPECS = "a published name, random:SEED, genotype text, a genotype file or a search run directory"


class Genotype(NamedTuple):
    """A discrete DARTS cell pair: for each of the 4 nodes, two (op, input) pairs; and which nodes are output."""

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of published DARTS genotypes: lists of [op, input] pairs and concat lists."""
        return {"normal": [list(p) for p in self.normal], "normal_concat": list(self.normal_concat),
                "reduce": [list(p) for p in self.reduce], "reduce_concat": list(self.reduce_concat)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __str__(self) -> str:
        """The Python form DARTS papers print: Genotype(normal=[('sep_conv_3x3', 0), ...], ...)."""
        def pairs(cell):
            return "[" + ", ".join(f"({op!r}, {i})" for op, i in cell) + "]"
        return (f"Genotype(normal={pairs(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={pairs(self.reduce)}, reduce_concat={list(self.reduce_concat)})")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Genotype":
        """Build and validate from the JSON layout."""
        if not isinstance(data, dict):
            raise GenotypeError(f"a DARTS genotype in JSON must be an object with fields {list(cls._fields)}, "
                                f"got {type(data).__name__}")
        missing = [k for k in cls._fields if k not in data]
        if missing:
            raise GenotypeError(f"DARTS genotype is missing field(s) {missing}")
        try:
            genotype = cls(
                normal=tuple((str(op), int(i)) for op, i in data["normal"]),
                normal_concat=tuple(int(i) for i in data["normal_concat"]),
                reduce=tuple((str(op), int(i)) for op, i in data["reduce"]),
                reduce_concat=tuple(int(i) for i in data["reduce_concat"]),
            )
        except (TypeError, ValueError, OverflowError) as err:
            raise GenotypeError(f"malformed DARTS genotype: {_one_line(err)}") from None
        genotype.validate()
        return genotype

    @classmethod
    def parse(cls, text: str) -> "Genotype":
        """Parse JSON or the printed Python form `Genotype(normal=[...], normal_concat=..., ...)`."""
        text = text.strip()
        if len(text) > _MAX_TEXT:
            raise GenotypeError(f"genotype text is {len(text):,} characters; a DARTS genotype is far shorter")
        if text.startswith("{"):
            try:
                return cls.from_dict(json.loads(text))
            except (json.JSONDecodeError, RecursionError) as err:
                raise GenotypeError(f"genotype is not valid JSON: {err}") from None
        match = re.fullmatch(r"Genotype\((.*)\)", text, flags=re.S)
        if match is None:
            raise GenotypeError(f"not a DARTS genotype (JSON or 'Genotype(...)'): {text[:80]!r}")
        try:
            call = ast.parse(f"f({match.group(1)})", mode="eval").body
            values = {kw.arg: _literal(kw.value) for kw in call.keywords}  # type: ignore[attr-defined]
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as err:
            raise GenotypeError(f"malformed DARTS genotype: {_one_line(err)}") from None
        return cls.from_dict(values)

    def validate(self) -> None:
        """Raise GenotypeError unless both cells are well formed."""
        for name, cell, concat in (("normal", self.normal, self.normal_concat),
                                   ("reduce", self.reduce, self.reduce_concat)):
            if len(cell) != 2 * STEPS:
                raise GenotypeError(f"{name} cell needs {2 * STEPS} (op, input) pairs, got {len(cell)}")
            for k, (op, index) in enumerate(cell):
                node = 2 + k // 2
                if op not in OPS or op == "none":
                    raise GenotypeError(f"{name} cell: unknown or 'none' operation {op!r}")
                if not 0 <= index < node:
                    raise GenotypeError(f"{name} cell: node {node} cannot take input {index}")
            if not concat or any(not 0 <= i < NODES for i in concat):
                raise GenotypeError(f"{name}_concat must list nodes in 0..{NODES - 1}, got {list(concat)}")


def _literal(node: ast.AST) -> Any:
    """ast.literal_eval that also accepts range(a, b) (published genotypes use it for concat)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        return list(range(*_range_args(node)))
    return _plain_value(node)


def _plain_value(node: ast.AST) -> Any:
    """ast.literal_eval, with a readable message for anything that is not a literal."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{ast.unparse(node)[:80]} is not a plain value (a list, tuple, string, number "
                         "or range(a, b))") from None


def _range_args(call: ast.Call) -> list[int]:
    """The arguments of a `range(...)` in genotype text: 1 to 3 integers within -NODES..NODES, step not 0.

    Checked before the range is built, so `range(2, 10**12)` is refused rather than listed.
    """
    source = ast.unparse(call)[:80]
    if call.keywords or not 1 <= len(call.args) <= 3:
        raise ValueError(f"{source}: want range(start, stop) with node indices")
    args = []
    for arg in call.args:
        try:
            value = _plain_value(arg)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{source}: range arguments must be integers, got {value!r:.40}")
        if not -NODES <= value <= NODES:
            raise ValueError(f"{source}: range arguments must be node indices (a cell has nodes 0..{NODES - 1})")
        args.append(value)
    if len(args) == 3 and args[2] == 0:
        raise ValueError(f"{source}: range step must not be 0")
    return args


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (SyntaxError's own text, without the caret display)."""
    text = err.msg if isinstance(err, SyntaxError) else str(err)
    return " ".join(str(text or type(err).__name__).split())


def _g(normal, reduce) -> Genotype:
    return Genotype(tuple(normal), (2, 3, 4, 5), tuple(reduce), (2, 3, 4, 5))


# Published cells. Parameter counts at C=36, 20 cells, auxiliary head excluded, are in the tests.
DARTS_V2 = _g(  # Liu et al., ICLR 2019 (second order): 3.3M
    [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
     ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
     ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)])
PC_DARTS = _g(  # Xu et al., ICLR 2020: 3.6M
    [("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
     ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
    [("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
     ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)])

PUBLISHED: dict[str, Genotype] = {"DARTS_V2": DARTS_V2, "PC_DARTS": PC_DARTS}


RANDOM_PREFIX = "random:"


def random_genotype(seed: int) -> Genotype:
    """A uniformly random DARTS genotype: per node, 2 distinct inputs and for each a non-`none` op, uniformly."""
    rng = random.Random(seed)
    ops = [op for op in OPS if op != "none"]

    def cell() -> tuple[tuple[str, int], ...]:
        gene: list[tuple[str, int]] = []
        for node in range(2, 2 + STEPS):
            gene.extend((rng.choice(ops), j) for j in sorted(rng.sample(range(node), 2)))
        return tuple(gene)

    concat = tuple(range(2, 2 + STEPS))
    return Genotype(cell(), concat, cell(), concat)


def load_genotype(spec: str | os.PathLike) -> Genotype:
    """A genotype from a published name, `random:SEED`, genotype text (JSON or printed), a file, or a run
    directory."""
    text = str(spec)
    if text in PUBLISHED:
        return PUBLISHED[text]
    if text.startswith(RANDOM_PREFIX):
        seed = text[len(RANDOM_PREFIX):]
        if not seed.isdigit():
            raise GenotypeError(f"{text!r}: want random:SEED with a non-negative integer seed")
        return random_genotype(int(seed))
    if text.lstrip().startswith(("{", "Genotype(")):
        return Genotype.parse(text)
    path = Path(text)
    if path.is_dir():
        return _genotype_of_run(path)
    if path.is_file():
        return _genotype_of_file(path)
    raise GenotypeError(f"{text[:200]!r} is not a published genotype ({', '.join(PUBLISHED)}), random:SEED, "
                        "an existing file, a run directory, or genotype text")


def _genotype_of_file(path: Path) -> Genotype:
    """The genotype in a text file (JSON or printed form)."""
    text = read_text(path, "a genotype file", GenotypeError, _MAX_TEXT, f"a genotype (--genotype) is {_SPECS}")
    if not text.strip():
        raise GenotypeError(f"{path} is empty; want a DARTS genotype (JSON or 'Genotype(...)')")
    try:
        return Genotype.parse(text)
    except GenotypeError as err:
        raise GenotypeError(f"{path}: {err}") from None


def _genotype_of_run(path: Path) -> Genotype:
    """The final genotype in a search run directory's result.json."""
    result = path / "result.json"
    if not result.is_file():
        raise GenotypeError(f"{path} is a folder without result.json; is it a finished gaeanas search run?")
    text = read_text(result, "a run result (JSON)", GenotypeError, 16 * 2**20)
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise GenotypeError(f"{result} is not valid JSON: {err}") from None
    genotype = record.get("genotype") if isinstance(record, dict) else None
    try:
        if isinstance(genotype, dict):
            return Genotype.from_dict(genotype)
        if isinstance(genotype, str):
            return Genotype.parse(genotype)
    except GenotypeError as err:
        raise GenotypeError(f"{result}: {err}") from None
    raise GenotypeError(f"{result} holds no DARTS-space genotype")
