"""A CloudEvents subscriber built on the CloudEvents Python SDK and http.server.

    receive.py [N]

Listens on 127.0.0.1 on a free port and prints the port alone on the first
stdout line. Every request is parsed with the SDK (`cloudevents.http.from_http`)
and printed as one JSON line:

    {"path": "/x", "method": "POST", "content_type": "...", "mode": "binary"|"structured",
     "attributes": {...all attributes incl. extensions...},
     "data": "<data as text>" | null, "data_kind": "json"|"text"|"bytes"|"none",
     "data_json": <data as a JSON value when the SDK parsed it as JSON>,
     "data_base64": "<data bytes, base64>" (when data_kind is bytes)}

and answered 200. A request the SDK rejects is printed as {"path": ..., "error": "..."}
and answered 400. Exits after N requests (default: never) or on SIGTERM/SIGINT.
"""

import base64
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from cloudevents.http import from_http


def describe(event) -> dict:
    data = event.get_data()
    out = {"attributes": {k: v for k, v in event.get_attributes().items()}}
    if data is None:
        out.update(data=None, data_kind="none")
    elif isinstance(data, (bytes, bytearray)):
        out.update(
            data=bytes(data).decode("utf-8", errors="replace"),
            data_kind="bytes",
            data_base64=base64.b64encode(bytes(data)).decode("ascii"),
        )
    elif isinstance(data, str):
        out.update(data=data, data_kind="text")
    else:
        out.update(data=json.dumps(data), data_kind="json", data_json=data)
    return out


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a single-threaded server never
    # waits on an idle keep-alive connection.
    protocol_version = "HTTP/1.0"

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_any(self) -> None:
        body = self.read_body()
        content_type = self.headers.get("Content-Type", "")
        line = {
            "path": self.path,
            "method": self.command,
            "content_type": content_type,
            "mode": "structured" if content_type.lower().startswith("application/cloudevents+json") else "binary",
        }
        try:
            event = from_http(dict(self.headers.items()), body)
            line.update(describe(event))
            status = 200
        except Exception as e:  # the SDK's many exception types
            line["error"] = f"{type(e).__name__}: {e}"
            status = 400
        print(json.dumps(line, default=str), flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.handled += 1

    do_POST = handle_any
    do_PUT = handle_any

    def log_message(self, format, *args) -> None:  # keep stdout for events only
        sys.stderr.write("receive.py: " + (format % args) + "\n")


def main() -> int:
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.handled = 0
    print(server.server_address[1], flush=True)
    try:
        while limit == 0 or server.handled < limit:
            server.handle_request()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
