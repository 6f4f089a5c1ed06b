"""Errors the model server maps to HTTP status codes.

Any exception raised by model code may carry a ``status_code`` attribute (the
sagemaker-inference-toolkit's ``GenericInferenceToolkitError`` style); the server answers
with that status. These classes are the server's own uses of that convention, so a
malformed body is a 4xx the client can act on instead of a 500 that looks like a model bug.
"""

from __future__ import annotations


class InferenceError(Exception):
    """An error with the HTTP status the server should answer with."""

    status_code: int = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class BadRequestError(InferenceError):
    """The request body could not be decoded by the built-in decoders."""

    status_code = 400


class UnsupportedContentTypeError(InferenceError):
    """No decoder for the request's Content-Type (the toolkit's ``UnsupportedFormatError``)."""

    status_code = 415


class UnsupportedAcceptError(InferenceError):
    """No encoder for anything the request's Accept header allows."""

    status_code = 406


class StartupError(Exception):
    """The server cannot start; the message is the one line the launcher shows as the reason."""


def describe(exc: BaseException) -> str:
    """``"ValueError: bad shape"``: the short form used in error bodies and startup failures."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def status_of(exc: BaseException) -> int:
    """The HTTP status for an exception raised while serving a request (500 unless it says)."""
    code = getattr(exc, "status_code", None)
    if isinstance(code, int) and 400 <= code <= 599:
        return code
    return 500
