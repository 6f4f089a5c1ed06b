"""Client threads that keep invoking an endpoint, for tests that break things under load."""

from __future__ import annotations

import threading
import time

from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

# What a client sees while the server process itself is down: no HTTP answer at all.
_SERVER_DOWN = (EndpointConnectionError, ConnectionClosedError)


class Traffic:
    """`threads` threads invoking `endpoint` through `runtime` (a boto3 client made
    without retries, so every error answer counts) until the block ends. `answered`
    counts successes and `bodies` holds their answers, in order; `errors` holds every HTTP
    error answer; `unreachable` counts calls
    that found no server listening (it was killed and not yet restarted). `extra` goes
    into every call (an InferenceComponentName, say)."""

    def __init__(
        self,
        runtime,
        endpoint: str,
        threads: int = 4,
        body: bytes = b"5.1,3.5,1.4,0.2",
        content_type: str = "text/csv",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.runtime = runtime
        self.endpoint = endpoint
        self.body = body
        self.content_type = content_type
        self.extra = extra or {}
        self.answered = 0
        self.bodies: list[bytes] = []
        self.unreachable = 0
        self.errors: list[ClientError] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(150)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.runtime.invoke_endpoint(
                    EndpointName=self.endpoint,
                    ContentType=self.content_type,
                    Body=self.body,
                    **self.extra,
                )
                body = answer["Body"].read()
            except ClientError as error:
                with self._lock:
                    self.errors.append(error)
            except _SERVER_DOWN:
                with self._lock:
                    self.unreachable += 1
                time.sleep(0.02)
            else:
                with self._lock:
                    self.answered += 1
                    self.bodies.append(body)

    def wait_for_answers(self, more: int, timeout_s: float = 60) -> None:
        """Until `more` further calls than now have succeeded."""
        target = self.answered + more
        deadline = time.monotonic() + timeout_s
        while self.answered < target:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {self.answered} answers, wanted {target}; errors: {self.errors[:3]}"
                )
            time.sleep(0.05)


def error_codes(errors: list[ClientError]) -> list[str]:
    return [
        f"{e.response['ResponseMetadata']['HTTPStatusCode']} {e.response['Error']['Code']}: "
        f"{e.response['Error']['Message']}"
        for e in errors
    ]
