"""NAS-Bench-101 without TensorFlow: TFRecord framing and CRCs, the metrics protobuf, pruning, the graph hash."""
import base64
import hashlib
import json
import struct

import numpy as np
import pytest

from gaeanas.errors import BenchmarkError
from gaeanas.nasbench.nb101 import (CONV1X1, CONV3X3, INPUT, MAXPOOL3X3, OUTPUT, NB101Table, crc32c, graph_hash,
                                    masked_crc, model_metrics, prune)


# ---- a fixture written with the real encodings, independently of the reader ----------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _double(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", value)


def _message(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def metrics_proto(test: float, valid: float, params: int = 1234) -> bytes:
    """ModelMetrics: three EvaluationData (start, halfway, final), the parameter count and the total time."""
    evaluations = b""
    for epoch, scale in ((0.0, 0.1), (54.0, 0.8), (108.0, 1.0)):
        data = (_double(1, epoch) + _double(2, 10.0 * epoch) + _double(3, scale) + _double(4, valid * scale)
                + _double(5, test * scale) + _message(6, b"/ckpt/model.ckpt-1"))
        evaluations += _message(1, data)
    return evaluations + _varint(2 << 3) + _varint(params) + _double(3, 99.5)


def frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def row(matrix, ops, epochs: int, test: float, valid: float) -> bytes:
    flat = "".join(str(int(v)) for v in np.asarray(matrix).flatten())
    return json.dumps([graph_hash(matrix, ops), epochs, flat, ",".join(ops),
                       base64.b64encode(metrics_proto(test, valid)).decode()]).encode()


CHAIN = (np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]), [INPUT, CONV3X3, CONV1X1, OUTPUT])
# the same cell with its two operation vertices listed the other way round
CHAIN_SWAPPED = (np.array([[0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]), [INPUT, CONV1X1, CONV3X3, OUTPUT])
POOL = (np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]]), [INPUT, MAXPOOL3X3, OUTPUT])
DIAMOND = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])


@pytest.fixture
def tfrecord(tmp_path):
    records = [row(*CHAIN, 108, 0.90, 0.91), row(*CHAIN, 108, 0.92, 0.93), row(*CHAIN, 12, 0.5, 0.5),
               row(*POOL, 108, 0.80, 0.81), row(DIAMOND, [INPUT, CONV3X3, CONV1X1, OUTPUT], 108, 0.94, 0.95)]
    path = tmp_path / "nasbench_only108.tfrecord"
    path.write_bytes(b"".join(frame(r) for r in records))
    return path


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0


def test_table_averages_the_108_epoch_repeats(tfrecord):
    table = NB101Table.from_tfrecord(tfrecord)
    assert len(table.accuracies) == 3
    chain = table.query(*CHAIN)
    assert chain["test_accuracy"] == pytest.approx(91.0) and chain["validation_accuracy"] == pytest.approx(92.0)
    diamond = table.query(DIAMOND, [INPUT, CONV1X1, CONV3X3, OUTPUT])  # stored with its branches the other way
    assert diamond["test_accuracy"] == pytest.approx(94.0)
    assert table.query(*POOL)["test_accuracy"] == pytest.approx(80.0)
    assert NB101Table.from_tfrecord(tfrecord.parent).accuracies == table.accuracies  # a folder holding the file


def test_saved_table_round_trips(tfrecord, tmp_path):
    table = NB101Table.from_tfrecord(tfrecord)
    table.save(tmp_path / "nb101.json")
    assert NB101Table.load(tmp_path / "nb101.json").accuracies == table.accuracies


def test_metrics_protobuf_is_decoded():
    metrics = model_metrics(metrics_proto(0.9, 0.8, params=4321))
    assert metrics["parameters"] == 4321 and len(metrics["evaluations"]) == 3
    assert metrics["evaluations"][-1] == pytest.approx({"current_epoch": 108.0, "training_time": 1080.0,
                                                        "train_accuracy": 1.0, "validation_accuracy": 0.8,
                                                        "test_accuracy": 0.9})


def test_hash_of_the_smallest_cell_by_hand():
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    vin, vout = md5("(1, 0, -1)"), md5("(0, 1, -2)")  # (out-degree, in-degree, label)
    for _ in range(2):  # one refinement per vertex
        vin, vout = md5("|" + vout + "|" + vin), md5(vin + "||" + vout)
    expected = md5(str(sorted([vin, vout])))
    assert graph_hash(np.array([[0, 1], [0, 0]]), [INPUT, OUTPUT]) == expected


def test_isomorphic_cells_share_a_hash_and_distinct_ones_do_not():
    assert graph_hash(*CHAIN) == graph_hash(*CHAIN_SWAPPED)
    assert graph_hash(CHAIN[0], [INPUT, CONV1X1, CONV3X3, OUTPUT]) != graph_hash(*CHAIN)  # order along the chain
    assert graph_hash(CHAIN[0], [INPUT, CONV3X3, CONV3X3, OUTPUT]) != graph_hash(*CHAIN)
    diamond = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    assert graph_hash(diamond, [INPUT, CONV3X3, CONV1X1, OUTPUT]) == graph_hash(diamond, [INPUT, CONV1X1, CONV3X3,
                                                                                         OUTPUT])
    assert graph_hash(diamond, CHAIN[1]) != graph_hash(*CHAIN)


def test_prune_drops_vertices_off_every_input_output_path():
    # vertex 2 (maxpool) hangs off the input and reaches nothing: pruned away, leaving the chain
    matrix = np.array([[0, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
    ops = [INPUT, CONV3X3, MAXPOOL3X3, CONV1X1, OUTPUT]
    pruned_matrix, pruned_ops = prune(matrix, ops)
    assert pruned_ops == CHAIN[1] and np.array_equal(pruned_matrix, CHAIN[0])
    assert prune(np.zeros((3, 3), dtype=int), [INPUT, CONV3X3, OUTPUT]) is None


def test_a_damaged_record_is_named(tfrecord):
    blob = bytearray(tfrecord.read_bytes())
    second = len(frame(row(*CHAIN, 108, 0.90, 0.91)))
    blob[second + 12 + 5] ^= 0xFF  # a byte inside record 1's data
    tfrecord.write_bytes(bytes(blob))
    with pytest.raises(BenchmarkError, match="record 1 is damaged"):
        NB101Table.from_tfrecord(tfrecord)


def test_a_truncated_file_and_a_missing_one_are_named(tfrecord, tmp_path):
    tfrecord.write_bytes(tfrecord.read_bytes()[:-7])
    with pytest.raises(BenchmarkError, match="truncated"):
        NB101Table.from_tfrecord(tfrecord)
    with pytest.raises(BenchmarkError, match="nasbench_only108.tfrecord"):
        NB101Table.from_tfrecord(tmp_path / "missing.tfrecord")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchmarkError, match="holds neither nasbench_only108.tfrecord"):
        NB101Table.from_tfrecord(tmp_path / "empty")


def test_queries_outside_the_space_are_refused(tfrecord):
    table = NB101Table.from_tfrecord(tfrecord)
    with pytest.raises(BenchmarkError, match="does not connect"):
        table.query(np.zeros((3, 3), dtype=int), [INPUT, CONV3X3, OUTPUT])
    with pytest.raises(BenchmarkError, match="not in the table"):
        table.query(CHAIN[0], [INPUT, MAXPOOL3X3, MAXPOOL3X3, OUTPUT])
    with pytest.raises(BenchmarkError, match="upper triangular"):
        table.query(*CHAIN_SWAPPED)
    with pytest.raises(BenchmarkError, match="unknown NAS-Bench-101 operation"):
        table.query(CHAIN[0], [INPUT, "conv5x5", CONV3X3, OUTPUT])


def test_reproduce_reads_the_tfrecord_once_into_a_compact_table(tfrecord, tmp_path):
    from gaeanas.reproduce import compact_nb101_table

    out = tmp_path / "results"
    compact = compact_nb101_table(tfrecord, out)
    assert compact == out / "nb101-table.json"
    assert NB101Table.load(compact).query(*CHAIN)["test_accuracy"] == pytest.approx(91.0)
    stamp = compact.stat().st_mtime_ns
    tfrecord.write_bytes(b"corrupt")  # not read again: the compact table is reused
    assert compact_nb101_table(tfrecord, out) == compact and compact.stat().st_mtime_ns == stamp
    assert compact_nb101_table(compact, tmp_path / "other") == compact  # a saved table is used as is
    with pytest.raises(BenchmarkError, match="not found"):
        compact_nb101_table(tmp_path / "missing.tfrecord", tmp_path / "third")
    assert not (tmp_path / "third").exists()
