"""NAS-Bench-201 ground truth (Dong & Yang, ICLR 2020; NATS-Bench TSS): test accuracy by architecture string."""
from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..data.textfiles import read_text
from ..errors import BenchmarkError, GenotypeError
from ..spaces.nb201 import EDGES, NUM_NODES, OPS, Genotype

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
# CSV column holding each dataset's test accuracy (percent, 200-epoch training, mean over seeds).
COLUMNS = {
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "ImageNet16-120": "ImageNetTestAccuracy200Epochs",
}
ARCH_COLUMN = "ArchitectureString"
SPACE_SIZE = len(OPS) ** len(EDGES)  # 5 ops on 6 edges: 15,625 architectures
_MAX_TABLE_BYTES = 64 * 2**20  # the real table is about 3 MB
# A canonical architecture string, `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` with known ops: most rows take
# this one match; anything else goes through Genotype.parse (which also words the error).
_OP = "(?:" + "|".join(map(re.escape, OPS)) + ")"
_CANONICAL = re.compile(r"\+".join(r"\|" + r"\|".join(f"{_OP}~{j}" for j in range(node)) + r"\|"
                                    for node in range(1, NUM_NODES)))
_HINT = "--benchmark wants the NAS-Bench-201 CSV table (nb201-tss-test-acc.csv)"


@dataclass(frozen=True)
class NB201Table:
    """Test accuracies of every architecture in the table, keyed by canonical architecture string."""

    accuracies: dict[str, tuple[float, float, float]]
    path: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NB201Table":
        """Read and check the CSV (columns: COLUMNS values and ArchitectureString), which must hold every
        architecture of the space exactly once, with finite accuracies in 0..100."""
        path = Path(path)
        if path.is_dir():
            raise BenchmarkError(f"{path} is a folder, not a CSV table; {_HINT}")
        if not path.is_file():
            raise BenchmarkError(f"benchmark table not found: {path}")
        text = read_text(path, "a CSV table", BenchmarkError, _MAX_TABLE_BYTES, _HINT)
        if not text.strip():
            raise BenchmarkError(f"{path} is empty; {_HINT}")
        if not text.endswith("\n"):
            raise BenchmarkError(f"{path} ends mid-line: the file looks truncated")
        accuracies = _read_rows(text, path)
        if len(accuracies) != SPACE_SIZE:
            raise BenchmarkError(f"{path} holds {len(accuracies):,} of the {SPACE_SIZE:,} NAS-Bench-201 "
                                 "architectures: it looks truncated")
        return cls(accuracies, str(path))

    def __len__(self) -> int:
        return len(self.accuracies)

    def query(self, arch: Genotype | str) -> dict[str, float]:
        """Test accuracy (percent) on each dataset for a genotype or architecture string."""
        genotype = arch if isinstance(arch, Genotype) else Genotype.parse(arch)
        key = str(genotype)
        if key not in self.accuracies:
            raise BenchmarkError(f"architecture {key} is not in the benchmark table {self.path or ''}".rstrip())
        return dict(zip(DATASETS, self.accuracies[key]))

    def best(self) -> dict[str, float]:
        """The best test accuracy in the table for each dataset (the benchmark's 'optimal' row)."""
        return {name: max(acc[i] for acc in self.accuracies.values()) for i, name in enumerate(DATASETS)}


def _read_rows(text: str, path: Path) -> dict[str, tuple[float, float, float]]:
    """Every data row's accuracies by canonical architecture string; BenchmarkError naming the bad line."""
    rows = _csv_rows(text, path)
    _, header = next(rows)
    header = [name.strip() for name in header]
    missing = [c for c in (ARCH_COLUMN, *COLUMNS.values()) if c not in header]
    if missing:
        raise BenchmarkError(f"{path} is not a NAS-Bench-201 table: missing column(s) {missing}; {_HINT}")
    arch_at = header.index(ARCH_COLUMN)
    acc_at = [header.index(COLUMNS[d]) for d in DATASETS]
    accuracies: dict[str, tuple[float, float, float]] = {}
    first_line: dict[str, int] = {}
    for line, row in rows:
        if len(row) != len(header):
            raise BenchmarkError(f"{path}, line {line} has {len(row)} of the {len(header)} columns: "
                                 "the file looks truncated or damaged")
        arch = _architecture(row[arch_at], path, line)
        if arch in first_line:
            raise BenchmarkError(f"{path}, line {line} repeats the architecture of line {first_line[arch]}: {arch}")
        first_line[arch] = line
        accuracies[arch] = tuple(_accuracy(row[i], header[i], path, line) for i in acc_at)  # type: ignore[assignment]
    return accuracies


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank CSV row; csv's own errors become BenchmarkError."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if row:
                yield reader.line_num, row
    except csv.Error as err:
        raise BenchmarkError(f"{path}, line {reader.line_num}: not valid CSV ({err})") from None


def _architecture(text: str, path: Path, line: int) -> str:
    """The canonical form of one row's architecture string."""
    if _CANONICAL.fullmatch(text):
        return text
    try:
        return str(Genotype.parse(text))
    except GenotypeError as err:
        raise BenchmarkError(f"{path}, line {line}: {err}") from None


def _accuracy(text: str, column: str, path: Path, line: int) -> float:
    """One accuracy cell as a finite percentage in 0..100."""
    try:
        value = float(text)
    except ValueError:
        raise BenchmarkError(f"{path}, line {line}: {column} is {text!r}, not a number") from None
    if not (math.isfinite(value) and 0.0 <= value <= 100.0):
        raise BenchmarkError(f"{path}, line {line}: {column} is {text!r}, not a percentage in 0..100")
    return value
