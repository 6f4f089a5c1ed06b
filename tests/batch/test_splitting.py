"""Record splitting and mini-batch packing on real byte streams."""

from __future__ import annotations

import gzip
import io
import struct

import pytest

from modelhost.batch import RecordError, mini_batches, open_input, skip

MB = 1024 * 1024


def _recordio(data: bytes, flag: int = 0) -> bytes:
    header = struct.pack("<II", 0xCED7230A, (flag << 29) | len(data))
    return header + data + b"\0" * (-len(data) % 4)


def _batches(data: bytes, split: str, strategy: str, max_bytes: int = MB, **kw):
    return list(mini_batches(io.BytesIO(data), split, strategy, max_bytes, **kw))


def test_multi_record_lines_pack_by_size_and_end_on_records() -> None:
    data = b"".join(b"%05d\n" % i for i in range(1000))  # 6 bytes a line
    batches = _batches(data, "Line", "MultiRecord", max_bytes=100)
    assert b"".join(b.payload for b in batches) == data
    assert all(len(b.payload) <= 100 and b.payload.endswith(b"\n") for b in batches)
    assert sum(b.records for b in batches) == 1000
    assert [b.first_record for b in batches[:3]] == [0, 16, 32]
    assert batches[-1].end_offset == len(data)


def test_last_line_without_newline_is_a_record() -> None:
    batches = _batches(b"a\nb", "Line", "MultiRecord")
    assert [(b.payload, b.records) for b in batches] == [(b"a\n", 1), (b"b", 1)]


def test_single_record_lines() -> None:
    batches = _batches(b"a\nbb\nccc\n", "Line", "SingleRecord")
    assert [b.payload for b in batches] == [b"a\n", b"bb\n", b"ccc\n"]
    assert [b.end_offset for b in batches] == [2, 5, 9]


def test_record_larger_than_payload_names_it() -> None:
    with pytest.raises(RecordError) as caught:
        _batches(b"ok\n" + b"x" * 50 + b"\n", "Line", "MultiRecord", max_bytes=20)
    assert caught.value.record == 1 and "record 2" in str(caught.value)


def test_resume_from_an_offset_continues_numbering() -> None:
    data = b"a\nb\nc\nd\n"
    stream = io.BytesIO(data)
    skip(stream, 4)
    batches = list(mini_batches(stream, "Line", "SingleRecord", MB, first_record=2, offset=4))
    assert [(b.payload, b.first_record, b.end_offset) for b in batches] == [
        (b"c\n", 2, 6),
        (b"d\n", 3, 8),
    ]


def test_recordio_records_keep_headers_and_join_parts() -> None:
    records = [_recordio(b"one"), _recordio(b"tw", 1) + _recordio(b"o!", 3), _recordio(b"3")]
    data = b"".join(records)
    single = _batches(data, "RecordIO", "SingleRecord")
    assert [b.payload for b in single] == records
    multi = _batches(data, "RecordIO", "MultiRecord", max_bytes=len(records[0]) + len(records[1]))
    assert [b.records for b in multi] == [2, 1]
    with pytest.raises(RecordError, match="magic"):
        _batches(b"\0" * 8, "RecordIO", "SingleRecord")


def test_split_none_sends_whole_object_within_limit() -> None:
    assert [b.payload for b in _batches(b"abc", "None", "MultiRecord")] == [b"abc"]
    with pytest.raises(RecordError, match="MaxPayloadInMB"):
        _batches(b"x" * 30, "None", "SingleRecord", max_bytes=20)


def test_gzip_input_is_decompressed() -> None:
    raw = io.BytesIO(gzip.compress(b"a\nb\n"))
    batches = list(mini_batches(open_input(raw, "Gzip"), "Line", "MultiRecord", MB))
    assert [b.payload for b in batches] == [b"a\nb\n"]
