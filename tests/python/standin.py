#!/usr/bin/env python3
"""A stand-in provider API for tests/python/run-schemathesis: the upstream that `/proxy/standin/…`
forwards to. It answers every method on every path with 200 and a small JSON body naming the
method and path (never the headers, so the injected credential is not echoed back), and it
prints its port on the first line of stdout."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            n = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return n
                self.rfile.read(size + 2)
                n += size
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        return length

    def answer(self):
        received = self.read_body()
        body = json.dumps({"method": self.command, "path": self.path, "received": received}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.answer
        raise AttributeError(name)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
