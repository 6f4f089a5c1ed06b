"""From an input object to the request bodies a transform job sends: decompression,
records (SplitType) and mini-batches (BatchStrategy, MaxPayloadInMB).

Everything streams: an object is read in blocks no larger than one mini-batch, so a job
over a 100 GB file holds about one payload per request in flight, never the file. A
mini-batch always ends on a record boundary, which is what lets a restarted job resume
from the uncompressed byte offset of the last committed batch.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, cast

# MXNet RecordIO: a little-endian magic, then a word holding a 3-bit continuation flag
# and a 29-bit length, then the data padded to 4 bytes.
_RECORDIO_MAGIC = 0xCED7230A
_RECORDIO_HEADER = struct.Struct("<II")
_LENGTH_MASK = (1 << 29) - 1


class RecordError(ValueError):
    """An input record cannot be sent: too large for MaxPayloadInMB, or malformed."""

    def __init__(self, message: str, record: int) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True, slots=True)
class MiniBatch:
    """One request body. `first_record` is the 0-based index of its first record in the
    object; `end_offset` the uncompressed byte offset just past it."""

    payload: bytes
    records: int
    first_record: int
    end_offset: int


def open_input(stream: IO[bytes], compression: str) -> IO[bytes]:
    if compression == "Gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
    return stream


def skip(stream: IO[bytes], offset: int, block: int = 1024 * 1024) -> None:
    """Move past the first `offset` uncompressed bytes (gzip streams cannot seek)."""
    remaining = offset
    while remaining > 0:
        got = len(stream.read(min(block, remaining)))
        if got == 0:
            raise RecordError(f"input is shorter than its recorded progress ({offset} bytes)", 0)
        remaining -= got


def mini_batches(
    stream: IO[bytes],
    split_type: str,
    strategy: str,
    max_bytes: int,
    *,
    first_record: int = 0,
    offset: int = 0,
) -> Iterator[MiniBatch]:
    """The mini-batches of an (already decompressed) stream positioned at `offset`."""
    if split_type == "None":
        yield from _whole(stream, max_bytes, first_record, offset)
    elif split_type == "Line" and strategy == "MultiRecord":
        yield from _line_blocks(stream, max_bytes, first_record, offset)
    else:
        records = _lines(stream) if split_type == "Line" else _recordio(stream, first_record)
        yield from _pack(
            records, 1 if strategy == "SingleRecord" else None, max_bytes, first_record, offset
        )


def _whole(stream: IO[bytes], max_bytes: int, first: int, offset: int) -> Iterator[MiniBatch]:
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RecordError(
            f"the object is larger than MaxPayloadInMB ({max_bytes // 2**20} MB) and "
            "SplitType is None",
            first,
        )
    if data:
        yield MiniBatch(data, 1, first, offset + len(data))


def _line_blocks(stream: IO[bytes], max_bytes: int, first: int, offset: int) -> Iterator[MiniBatch]:
    """Line records packed by size without looking at each line in Python: read up to a
    payload's worth, cut after the last newline, count newlines in C."""
    carry = b""
    while True:
        if len(carry) >= max_bytes:
            raise RecordError(
                f"record {first + 1} is larger than MaxPayloadInMB ({max_bytes // 2**20} MB)", first
            )
        block = stream.read(max_bytes - len(carry))
        if not block:
            if carry:
                yield MiniBatch(carry, 1, first, offset + len(carry))
            return
        data = carry + block if carry else block
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data
            continue
        payload, carry = data[:cut], data[cut:]
        records = payload.count(b"\n")
        offset += cut
        yield MiniBatch(payload, records, first, offset)
        first += records


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    yield from stream


def _recordio(stream: IO[bytes], first: int) -> Iterator[bytes]:
    """Whole RecordIO records, headers kept (the model's decoder expects them); a record
    split into parts (continuation flag) is sent as all its parts."""
    index = first
    pending: list[bytes] = []
    while True:
        header = stream.read(_RECORDIO_HEADER.size)
        if not header:
            if pending:
                raise RecordError(f"record {index + 1} is cut short", index)
            return
        if len(header) < _RECORDIO_HEADER.size:
            raise RecordError(f"record {index + 1} has a truncated RecordIO header", index)
        magic, word = _RECORDIO_HEADER.unpack(header)
        if magic != _RECORDIO_MAGIC:
            raise RecordError(f"record {index + 1} does not start with the RecordIO magic", index)
        length = word & _LENGTH_MASK
        body = stream.read(length + (-length % 4))
        if len(body) < length:
            raise RecordError(f"record {index + 1} is cut short", index)
        pending.append(header + body)
        if (word >> 29) in (0, 3):  # whole record, or the last part of one
            yield b"".join(pending)
            pending = []
            index += 1


def _pack(
    records: Iterator[bytes], per_batch: int | None, max_bytes: int, first: int, offset: int
) -> Iterator[MiniBatch]:
    batch: list[bytes] = []
    size = 0
    index = first
    for record in records:
        if len(record) > max_bytes:
            raise RecordError(
                f"record {index + 1} is larger than MaxPayloadInMB ({max_bytes // 2**20} MB)", index
            )
        if batch and (size + len(record) > max_bytes or len(batch) == per_batch):
            offset += size
            yield MiniBatch(b"".join(batch), len(batch), index - len(batch), offset)
            batch, size = [], 0
        batch.append(record)
        size += len(record)
        index += 1
    if batch:
        yield MiniBatch(b"".join(batch), len(batch), index - len(batch), offset + size)
