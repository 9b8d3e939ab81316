"""NAS-Bench-101 (Ying et al., ICML 2019) without TensorFlow: the TFRecord reader, the graph hash, a lookup table.

The official `nasbench_only108.tfrecord` (or `nasbench_full.tfrecord`) is a TFRecord file: each record is framed
as (length: uint64 LE, masked CRC-32C of the length, data, masked CRC-32C of the data), and its data is the JSON
list [module hash, epochs, adjacency as a 0/1 string, comma-separated operations, base64 ModelMetrics protobuf].
The table keeps, per graph hash, the mean final test and validation accuracy at 108 epochs over the repeats.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

from ..errors import BenchmarkError

INPUT, OUTPUT = "input", "output"
CONV3X3, CONV1X1, MAXPOOL3X3 = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"
OPS = (CONV3X3, CONV1X1, MAXPOOL3X3)  # NAS-Bench-101's canonical order: an op's label in the hash is its index
MAX_VERTICES, MAX_EDGES = 7, 9
EPOCHS = 108
FILE_NAMES = ("nasbench_only108.tfrecord", "nasbench_full.tfrecord")
_HINT = (f"--benchmark wants NAS-Bench-101's {FILE_NAMES[0]} (about 500 MB, from the nasbench project's "
         "download page; it cannot be fetched here)")

# ---- CRC-32C (Castagnoli), as TFRecord frames use it -----------------------------------------------------------

_CASTAGNOLI = 0x82F63B78


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CASTAGNOLI if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of `data` (pure Python, table-driven)."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC: rotate the CRC-32C right by 15 bits and add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecords(stream: BinaryIO, name: str = "the file", verify: bool = True) -> Iterator[bytes]:
    """The records of a TFRecord stream; a truncated frame or a CRC mismatch is a BenchmarkError naming the record."""
    index = 0
    while True:
        head = stream.read(12)
        if not head:
            return
        if len(head) < 12:
            raise BenchmarkError(f"{name}: record {index} is cut off in its header: the file looks truncated")
        length, length_crc = struct.unpack("<QI", head)
        if verify and masked_crc(head[:8]) != length_crc:
            raise BenchmarkError(f"{name}: record {index} has a damaged length (CRC mismatch); is it a TFRecord file?")
        data = stream.read(length)
        tail = stream.read(4)
        if len(data) < length or len(tail) < 4:
            raise BenchmarkError(f"{name}: record {index} is cut off: the file looks truncated")
        if verify and masked_crc(data) != struct.unpack("<I", tail)[0]:
            raise BenchmarkError(f"{name}: record {index} is damaged (its data's CRC does not match)")
        yield data
        index += 1


# ---- the ModelMetrics protobuf (nasbench/lib/model_metrics.proto), decoded by hand ----------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise BenchmarkError("a protobuf varint runs past the end of its message")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def protobuf_fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protobuf message: ints for varints, floats for 64-bit fields (doubles), bytes for
    length-delimited ones. 32-bit fields are read as floats."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<d", buf, pos)[0], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<f", buf, pos)[0], pos + 4
        else:
            raise BenchmarkError(f"unsupported protobuf wire type {wire} (field {number})")
        if pos > len(buf):
            raise BenchmarkError(f"protobuf field {number} runs past the end of its message")
        yield number, value


EVALUATION_FIELDS = {1: "current_epoch", 2: "training_time", 3: "train_accuracy", 4: "validation_accuracy",
                     5: "test_accuracy"}


def model_metrics(buf: bytes) -> dict[str, Any]:
    """A ModelMetrics message: {"evaluations": [{current_epoch, training_time, *_accuracy}], "parameters": int}."""
    evaluations, parameters = [], None
    for number, value in protobuf_fields(buf):
        if number == 1:
            evaluations.append({EVALUATION_FIELDS[n]: v for n, v in protobuf_fields(value) if n in EVALUATION_FIELDS})
        elif number == 2:
            parameters = value
    return {"evaluations": evaluations, "parameters": parameters}


# ---- graphs: pruning and NAS-Bench-101's hash ----------------------------------------------------------------

def prune(matrix: np.ndarray, ops: Sequence[str]) -> tuple[np.ndarray, list[str]] | None:
    """Drop the vertices not on an input-to-output path (NAS-Bench-101's rule); None when none is left."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = len(ops)
    from_input, frontier = {0}, [0]
    while frontier:
        top = frontier.pop()
        for v in range(top + 1, n):
            if matrix[top, v] and v not in from_input:
                from_input.add(v)
                frontier.append(v)
    to_output, frontier = {n - 1}, [n - 1]
    while frontier:
        top = frontier.pop()
        for v in range(top):
            if matrix[v, top] and v not in to_output:
                to_output.add(v)
                frontier.append(v)
    keep = sorted(from_input & to_output)
    if len(keep) < 2 or 0 not in keep or n - 1 not in keep:
        return None
    return matrix[np.ix_(keep, keep)], [ops[v] for v in keep]


def graph_hash(matrix: np.ndarray, ops: Sequence[str]) -> str:
    """NAS-Bench-101's isomorphism-invariant MD5 hash of a (pruned) cell: vertex labels from the in and out
    degrees and the operation (-1 input, -2 output, else its index in OPS), refined over the neighbourhoods once per
    vertex, then the sorted vertex hashes hashed together."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = len(ops)
    labels = [-1] + [OPS.index(op) for op in ops[1:-1]] + [-2]
    ins, outs = matrix.sum(axis=0).tolist(), matrix.sum(axis=1).tolist()
    hashes = [_md5(str((outs[v], ins[v], labels[v]))) for v in range(n)]
    for _ in range(n):
        hashes = [_md5("".join(sorted(hashes[w] for w in range(n) if matrix[w, v])) + "|" +
                       "".join(sorted(hashes[w] for w in range(n) if matrix[v, w])) + "|" + hashes[v])
                  for v in range(n)]
    return _md5(str(sorted(hashes)))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def check_cell(matrix: np.ndarray, ops: Sequence[str]) -> None:
    """BenchmarkError unless a pruned cell lies in NAS-Bench-101's space (7 vertices, 9 edges, its three ops)."""
    if len(ops) > MAX_VERTICES:
        raise BenchmarkError(f"the cell has {len(ops)} vertices; NAS-Bench-101 has at most {MAX_VERTICES}")
    if int(np.sum(matrix)) > MAX_EDGES:
        raise BenchmarkError(f"the cell has {int(np.sum(matrix))} edges; NAS-Bench-101 has at most {MAX_EDGES}")
    if ops[0] != INPUT or ops[-1] != OUTPUT:
        raise BenchmarkError("a NAS-Bench-101 cell starts with 'input' and ends with 'output'")
    unknown = [op for op in ops[1:-1] if op not in OPS]
    if unknown:
        raise BenchmarkError(f"unknown NAS-Bench-101 operation(s) {unknown}; known: {list(OPS)}")


# ---- the lookup table ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NB101Table:
    """Mean final test and validation accuracy (fractions, 108 epochs) by NAS-Bench-101 graph hash."""

    accuracies: dict[str, tuple[float, float]]  # hash -> (test, validation)
    path: str = ""

    @classmethod
    def from_tfrecord(cls, path: str | os.PathLike, verify: bool = True) -> "NB101Table":
        """Read the official TFRecord once (minutes for the 500 MB file): every 108-epoch record, averaged over
        repeats."""
        path = Path(path)
        if path.is_dir():
            candidates = [path / n for n in FILE_NAMES if (path / n).is_file()]
            if not candidates:
                raise BenchmarkError(f"{path} holds neither {' nor '.join(FILE_NAMES)}; {_HINT}")
            path = candidates[0]
        if not path.is_file():
            raise BenchmarkError(f"NAS-Bench-101 file not found: {path}; {_HINT}")
        sums: dict[str, list[float]] = {}
        with open(path, "rb") as stream:
            for index, record in enumerate(tfrecords(stream, str(path), verify)):
                module_hash, epochs, metrics = _parse_record(record, path, index)
                if epochs != EPOCHS:
                    continue
                final = metrics["evaluations"][-1]
                entry = sums.setdefault(module_hash, [0.0, 0.0, 0])
                entry[0] += final["test_accuracy"]
                entry[1] += final["validation_accuracy"]
                entry[2] += 1
        if not sums:
            raise BenchmarkError(f"{path} holds no {EPOCHS}-epoch records; {_HINT}")
        return cls({h: (t / n, v / n) for h, (t, v, n) in sums.items()}, str(path))

    def save(self, path: str | os.PathLike) -> None:
        """The compact table as JSON (a few MB), so the TFRecord is read only once."""
        Path(path).write_text(json.dumps({"source": self.path, "epochs": EPOCHS, "accuracies": self.accuracies}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NB101Table":
        """A table saved by `save`, or the official TFRecord (read now)."""
        path = Path(path)
        if path.suffix == ".json" and path.is_file():
            data = json.loads(path.read_text())
            return cls({h: tuple(v) for h, v in data["accuracies"].items()}, data.get("source", str(path)))
        return cls.from_tfrecord(path)

    def query(self, matrix: np.ndarray, ops: Sequence[str]) -> dict[str, Any]:
        """Mean test and validation accuracy (percent) of a cell, pruned and hashed as NAS-Bench-101 does."""
        matrix = np.asarray(matrix)
        if matrix.shape != (len(ops), len(ops)) or np.tril(matrix).any():
            raise BenchmarkError(f"a NAS-Bench-101 cell is an upper triangular {len(ops)}x{len(ops)} 0/1 matrix "
                                 f"(edges from earlier to later vertices), got shape {matrix.shape}")
        pruned = prune(matrix, ops)
        if pruned is None:
            raise BenchmarkError("the cell does not connect its input to its output")
        check_cell(*pruned)
        key = graph_hash(*pruned)
        if key not in self.accuracies:
            raise BenchmarkError(f"cell {key} is not in the table {self.path}".rstrip())
        test, valid = self.accuracies[key]
        return {"test_accuracy": 100.0 * test, "validation_accuracy": 100.0 * valid, "hash": key}


def _parse_record(record: bytes, path: Path, index: int) -> tuple[str, int, dict[str, Any]]:
    try:
        module_hash, epochs, _, _, raw_metrics = json.loads(record.decode("utf-8"))
        metrics = model_metrics(base64.b64decode(raw_metrics, validate=True))
    except (ValueError, TypeError, binascii.Error) as err:  # JSON, unpacking, base64
        raise BenchmarkError(f"{path}: record {index} is not a NAS-Bench-101 row: {err}") from None
    if len(metrics["evaluations"]) < 1 or "test_accuracy" not in metrics["evaluations"][-1]:
        raise BenchmarkError(f"{path}: record {index} has no final evaluation")
    return module_hash, int(epochs), metrics
