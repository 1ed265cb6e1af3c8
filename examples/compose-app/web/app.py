"""The example's web service: `/` answers its version, `/health` answers
200 once PostgreSQL accepts connections at DATABASE_HOST:5432."""

import http.server
import os
import socket

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = open(os.path.join(HERE, "VERSION")).read().strip()


def database_up():
    try:
        with socket.create_connection((os.environ.get("DATABASE_HOST", "db"), 5432), timeout=1):
            return True
    except OSError:
        return False


def healthy():
    # A release can ship broken on purpose: the tests use it to see a
    # rollout fail its health check and roll back.
    return database_up() and not os.path.exists(os.path.join(HERE, "BROKEN"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            ok = healthy()
            self.send_response(200 if ok else 503)
            body = b"ok\n" if ok else b"not healthy\n"
        else:
            self.send_response(200)
            body = f"shop {VERSION}\n".encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        print(format % args, flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("APP_PORT", "8000"))
    print(f"shop {VERSION} listening on {port}", flush=True)
    http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
