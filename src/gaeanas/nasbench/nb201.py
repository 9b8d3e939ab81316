"""NAS-Bench-201 ground truth (Dong & Yang, ICLR 2020; NATS-Bench TSS): test accuracy by architecture string."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BenchmarkError
from ..spaces.nb201 import Genotype

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
# CSV column holding each dataset's test accuracy (percent, 200-epoch training, mean over seeds).
COLUMNS = {
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "ImageNet16-120": "ImageNetTestAccuracy200Epochs",
}
ARCH_COLUMN = "ArchitectureString"


@dataclass(frozen=True)
class NB201Table:
    """Test accuracies of every architecture in the table, keyed by canonical architecture string."""

    accuracies: dict[str, tuple[float, float, float]]
    path: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NB201Table":
        """Read the CSV (columns: COLUMNS values and ArchitectureString)."""
        path = Path(path)
        if not path.is_file():
            raise BenchmarkError(f"benchmark table not found: {path}")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in (ARCH_COLUMN, *COLUMNS.values()) if c not in (reader.fieldnames or [])]
            if missing:
                raise BenchmarkError(f"{path} is not a NAS-Bench-201 table: missing column(s) {missing}")
            accuracies = {}
            for line, row in enumerate(reader, start=2):
                accuracies[row[ARCH_COLUMN].strip()] = _parse_row(row, path, line)
        if not accuracies:
            raise BenchmarkError(f"{path} has a header but no architectures")
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


def _parse_row(row: dict[str, str], path: Path, line: int) -> tuple[float, float, float]:
    try:
        return tuple(float(row[COLUMNS[d]]) for d in DATASETS)  # type: ignore[return-value]
    except (TypeError, ValueError) as err:
        raise BenchmarkError(f"{path}, line {line}: accuracy is not a number ({err})") from None
