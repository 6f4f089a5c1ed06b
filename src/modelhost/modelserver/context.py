"""The ``context`` argument handed to handlers that ask for one.

sagemaker-inference-toolkit handlers run inside Multi Model Server and may take a trailing
``context`` argument, an MMS ``Context``. Code written for it reads request headers with
``context.request_processor[0].get_request_properties()`` (custom attributes mostly) and
``context.system_properties["model_dir"]``, and sets response headers with
``context.set_response_header(0, name, value)``. This is a small object with that surface plus
two direct properties, so such code runs unchanged. Only the custom-attributes response header
is sent back to the client.
"""

from __future__ import annotations

from typing import Any

CUSTOM_ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"


class Headers(dict[str, str]):
    """Header names are case-insensitive; keys are stored lower-case."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class RequestProcessor:
    """MMS's per-request view: request properties in, response properties out."""

    __slots__ = ("_request", "_response")

    def __init__(self, request_headers: Headers) -> None:
        self._request = request_headers
        self._response = Headers()

    def get_request_properties(self) -> Headers:
        return self._request

    def get_request_property(self, key: str) -> str | None:
        return self._request.get(key)

    def add_response_property(self, key: str, value: str) -> None:
        self._response[key.lower()] = str(value)

    def get_response_headers(self) -> Headers:
        return self._response

    def get_response_header(self, key: str) -> str | None:
        return self._response.get(key)


class Context:
    """One request's context (or, for ``model_fn``, the server's, with no request headers)."""

    __slots__ = ("request_processor", "system_properties")

    def __init__(self, model_dir: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        request = Headers(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in headers or ()
        )
        self.request_processor = [RequestProcessor(request)]
        self.system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": None,
            "batch_size": 1,
            "server_name": "modelhost",
        }

    @property
    def request_headers(self) -> Headers:
        return self.request_processor[0].get_request_properties()

    @property
    def custom_attributes(self) -> str | None:
        """The request's ``X-Amzn-SageMaker-Custom-Attributes``, if any."""
        return self.request_headers.get(CUSTOM_ATTRIBUTES)

    @property
    def response_custom_attributes(self) -> str | None:
        return self.request_processor[0].get_response_header(CUSTOM_ATTRIBUTES)

    @response_custom_attributes.setter
    def response_custom_attributes(self, value: str) -> None:
        self.request_processor[0].add_response_property(CUSTOM_ATTRIBUTES, value)

    # MMS Context methods; ``idx`` is the request's position in a batch (always 0 here).
    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> Headers:
        return self.request_processor[idx].get_request_properties()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.request_processor[idx].add_response_property(key, value)
