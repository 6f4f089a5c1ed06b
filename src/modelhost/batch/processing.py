"""DataProcessing: JSONPath InputFilter / OutputFilter and JoinSource, for CSV and JSON
Lines records, as SageMaker batch transform applies them.

A CSV record is seen as an array of its fields (`$[1:]` drops the first column), a JSON
line as its JSON value (`$.features`). With JoinSource=Input the model's output for a
record is joined to the original input record: appended as columns to a CSV row or an
array, or stored under `SageMakerOutput` in an object. The OutputFilter then picks from
the joined record (or from the output alone without a join).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext import parse

CSV = "text/csv"
# An expression with any of these can match several values, so it yields an array even
# when it matched one; otherwise its single match is the value itself.
_MANY = ("*", ":", ",", "..", "?")


class ProcessingError(ValueError):
    """A record the filters or the join cannot handle; `record` is its index in the batch."""

    def __init__(self, message: str, record: int) -> None:
        super().__init__(message)
        self.record = record


def compile_filter(expression: str | None) -> tuple[JSONPath, bool] | None:
    """A parsed filter and whether it selects many values; None for "$" (everything).
    Raises ValueError with the parser's message for a bad expression."""
    if expression is None or expression.strip() == "$":
        return None
    try:
        return parse(expression), not any(token in expression for token in _MANY)
    except (JsonPathParserError, Exception) as exc:  # the lexer raises plain Exception
        raise ValueError(f"invalid JSONPath {expression!r}: {exc}") from exc


def _select(path: tuple[JSONPath, bool], value: Any, what: str, record: int) -> Any:
    expression, single = path
    found = [match.value for match in expression.find(value)]
    if not single:
        return found
    if not found:
        raise ProcessingError(f"{what} {expression} matched nothing", record)
    return found[0]


def _is_csv(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == CSV


def _parse(line: bytes, as_csv: bool, record: int) -> Any:
    try:
        if as_csv:
            return next(csv.reader([line.decode()]), [])
        return orjson.loads(line)
    except (UnicodeDecodeError, orjson.JSONDecodeError, csv.Error) as exc:
        kind = "CSV" if as_csv else "JSON"
        raise ProcessingError(f"not a valid {kind} record ({exc})", record) from exc


def _dump(value: Any, as_csv: bool) -> bytes:
    if not as_csv:
        return orjson.dumps(value)
    row = value if isinstance(value, list) else [value]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(
        [v if isinstance(v, str) else orjson.dumps(v).decode() for v in row]
    )
    return buffer.getvalue().encode()


def _lines(payload: bytes) -> list[bytes]:
    lines = payload.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.rstrip(b"\r") for line in lines]


class DataProcessing:
    """The DataProcessing of one job, applied batch by batch."""

    def __init__(
        self, config: dict[str, Any], content_type: str | None, accept: str | None
    ) -> None:
        self.input_filter = compile_filter(config.get("InputFilter"))
        self.output_filter = compile_filter(config.get("OutputFilter"))
        self.join = config.get("JoinSource", "None") == "Input"
        self.input_csv = _is_csv(content_type)
        self.accept = accept

    @property
    def active(self) -> bool:
        return bool(self.input_filter or self.output_filter or self.join)

    def request(self, payload: bytes) -> tuple[bytes, list[bytes]]:
        """The filtered request body of a batch, and its input records for the join."""
        records = _lines(payload)
        if self.input_filter is None:
            return payload, records
        out = []
        for index, line in enumerate(records):
            value = _parse(line, self.input_csv, index)
            out.append(
                _dump(_select(self.input_filter, value, "InputFilter", index), self.input_csv)
            )
        return b"\n".join(out) + b"\n", records

    def response(self, inputs: list[bytes], body: bytes, content_type: str | None) -> bytes:
        """The model's answer for a batch turned into the output lines of its records."""
        output_csv = _is_csv(content_type or self.accept)
        outputs = self._output_records(body, output_csv, len(inputs))
        lines = []
        for index, output in enumerate(outputs):
            as_csv = output_csv
            value = output
            if self.join:
                value, as_csv = self._joined(inputs[index], output, index), self.input_csv
            if self.output_filter is not None:
                value = _select(self.output_filter, value, "OutputFilter", index)
            lines.append(_dump(value, as_csv))
        return b"\n".join(lines) + b"\n"

    def _output_records(self, body: bytes, as_csv: bool, expected: int) -> list[Any]:
        lines = _lines(body)
        if not as_csv and len(lines) == 1 and expected != 1:
            # application/json: one array for the whole batch, an element per record
            whole = _parse(lines[0], False, 0)
            if isinstance(whole, dict) and len(whole) == 1:
                whole = next(iter(whole.values()))  # {"predictions": [...]}
            outputs = whole if isinstance(whole, list) else [whole]
        else:
            outputs = [_parse(line, as_csv, i) for i, line in enumerate(lines)]
            # a one-column CSV answer is a value, not a row of one
            outputs = [o[0] if isinstance(o, list) and len(o) == 1 else o for o in outputs]
        if len(outputs) != expected:
            raise ProcessingError(
                f"the model returned {len(outputs)} records for {expected} input records; "
                "a join or output filter needs one output record per input record",
                0,
            )
        return outputs

    def _joined(self, line: bytes, output: Any, index: int) -> Any:
        value = _parse(line, self.input_csv, index)
        if isinstance(value, list):
            return value + (output if isinstance(output, list) else [output])
        if isinstance(value, dict):
            return {**value, "SageMakerOutput": output}
        return [value, output]
