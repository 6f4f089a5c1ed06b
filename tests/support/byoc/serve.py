"""SageMaker's inference container contract, by hand: started with `serve`, /ping and
/invocations on 8080, the model in /opt/ml/model.

/invocations answers JSON naming what the container was given (its argument, the model
file, an environment variable, its hostname), so a test can tell it ran as SageMaker runs
images. A body `{"allocate_mb": N}` makes it hold N MiB (in steps of 16), to meet its memory
limit.
Each response goes out in one write (two writes stall ~40 ms on Nagle + delayed ACK),
and SIGTERM ends it at once.
"""

import json
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_DIR = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
held = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status, body, content_type="application/json"):
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode() + body)

    def do_GET(self):
        if self.path == "/ping":
            self._answer(200, b"", "text/plain")
        else:
            self._answer(404, b"{}")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/invocations":
            self._answer(404, b"{}")
            return
        request = json.loads(body or b"{}")
        if "allocate_mb" in request:
            # In 16 MiB steps, so /ping keeps answering while the memory fills (one
            # large bytearray holds the interpreter for seconds).
            for _ in range(int(request["allocate_mb"]) // 16):
                held.append(bytearray(16 * 1024 * 1024))
        with open(os.path.join(MODEL_DIR, "model.txt")) as model:
            answer = {
                "server": "byoc",
                "args": sys.argv[1:],
                "model": model.read(),
                "greeting": os.environ.get("GREETING"),
                "port": os.environ.get("SAGEMAKER_BIND_TO_PORT"),
                "model_dir": MODEL_DIR,
                "hostname": socket.gethostname(),
                "echo": request,
            }
        self._answer(200, json.dumps(answer).encode())

    def log_message(self, *args):
        pass


def main():
    if sys.argv[1:] != ["serve"]:
        sys.exit(f"expected the argument serve, got {sys.argv[1:]}")
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"byoc serving {MODEL_DIR} on {server.server_address}", flush=True)
    server.serve_forever()


main()
