"""Which objects a transform job reads (S3Prefix or ManifestFile) and where each one's
output goes: `<S3OutputPath>/<key relative to the input prefix>.out`, as SageMaker names
it."""

from __future__ import annotations

from typing import Any

import orjson

from modelhost.storage import ObjectStore


class InputError(ValueError):
    """The input data source names nothing usable; the message says why."""


def _base(prefix: str) -> str:
    """The folder outputs are named relative to: the prefix itself when it ends with "/",
    else its parent (a key prefix like `in/data` also matches `in/data-2.csv`)."""
    return prefix if prefix.endswith("/") else prefix.rpartition("/")[0] + "/"


def input_objects(objects: ObjectStore, data_source: dict[str, Any]) -> list[tuple[str, str]]:
    """(input URI, name relative to the base) for every object, in a stable order."""
    source = data_source["S3DataSource"]
    uri = source["S3Uri"]
    if source["S3DataType"] == "ManifestFile":
        return _manifest(objects, uri)
    if source["S3DataType"] != "S3Prefix":
        raise InputError(
            f"S3DataType {source['S3DataType']} is not supported for transform "
            "jobs; use S3Prefix or ManifestFile."
        )
    base = _base(uri)
    found = objects.list(uri)
    if not found:
        raise InputError(f"No input objects found under {uri}.")
    return [
        (item, item[len(base) :] if item.startswith(base) else item.rpartition("/")[2])
        for item in found
    ]


def _manifest(objects: ObjectStore, uri: str) -> list[tuple[str, str]]:
    """A manifest is a JSON array: `{"prefix": "s3://b/p/"}` then keys relative to it."""
    try:
        entries = orjson.loads(objects.get_bytes(uri))
    except FileNotFoundError:
        raise InputError(f"The manifest file {uri} does not exist.") from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"The manifest file {uri} is not valid JSON: {exc}") from None
    if not (
        isinstance(entries, list)
        and entries
        and isinstance(entries[0], dict)
        and isinstance(entries[0].get("prefix"), str)
        and all(isinstance(e, str) for e in entries[1:])
    ):
        raise InputError(
            f'The manifest file {uri} must be a JSON array: {{"prefix": '
            '"s3://bucket/prefix/"} followed by object keys.'
        )
    prefix = entries[0]["prefix"]
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    if len(entries) == 1:
        raise InputError(f"The manifest file {uri} lists no objects.")
    return [(prefix + key.lstrip("/"), key.lstrip("/")) for key in entries[1:]]


def output_uri(output_path: str, relative: str) -> str:
    return f"{output_path.rstrip('/')}/{relative}.out"
