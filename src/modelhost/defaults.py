"""Where a server listens and which region its ARNs name unless told otherwise: one
place for the server's settings, its command line and the client commands that find it.

A leaf module (no imports) so the client commands read it without loading the server.
"""

HOST = "127.0.0.1"
PORT = 8765
REGION = "us-east-1"
#: The server a client command talks to unless --endpoint-url / MODELHOST_URL says.
URL = f"http://{HOST}:{PORT}"
