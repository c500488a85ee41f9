"""Local alert receivers for tests: a minimal SMTP server and a JSON webhook receiver, both on 127.0.0.1.

Run as a script (``python alert_sinks.py --out FILE``), both serve on every interface of a container inside
the compose test network (``alert-sink`` in tests/containers/compose.test.yaml) and append what they receive
to FILE as JSON lines, which the container tests read back. Standard library only: it runs in any image.
"""

from __future__ import annotations

import email
import json
import socketserver
import threading
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SmtpSink:
    """A tiny SMTP server (EHLO/HELO, MAIL, RCPT, DATA, QUIT; no TLS, no auth) keeping every message
    received."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, record: Callable[[dict], None] | None = None
    ) -> None:
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(f"{line}\r\n".encode())

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                rcpts: list[str] = []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    command = raw.decode(errors="replace").strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.reply("250-sink")
                        self.reply("250 8BITMIME")
                    elif verb == "RCPT":
                        rcpts.append(command.split(":", 1)[1].strip(" <>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        lines = []
                        while (line := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                            lines.append(line[1:] if line.startswith(b"..") else line)
                        message = email.message_from_bytes(b"".join(lines))
                        sink.messages.append(message)
                        sink.recipients.append(rcpts)
                        if record is not None:
                            record({"channel": "smtp", "to": rcpts, "subject": _subject(message)})
                        rcpts = []
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:  # HELO, MAIL, RSET, NOOP
                        self.reply("250 OK")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def subjects(self) -> list[str]:
        """Decoded subjects of the messages received."""
        return [_subject(m) for m in self.messages]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebhookReceiver:
    """An HTTP server keeping every JSON body POSTed to it; ``fail=True`` answers 500 instead."""

    def __init__(
        self,
        fail: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        record: Callable[[dict], None] | None = None,
    ) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []  # of each body kept, in order
        self.paths: list[str] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if receiver.fail:
                    self.send_response(500)
                else:
                    receiver.bodies.append(body)
                    receiver.headers.append(dict(self.headers))
                    receiver.paths.append(self.path)
                    if record is not None:
                        record({"channel": "webhook", "body": body})
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kinds(self) -> list[str]:
        """Alert kinds received, in order."""
        return [b["driftloop"]["kind"] for b in self.bodies]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def smtp_conn_uri(port: int, host: str = "127.0.0.1") -> str:
    """An Airflow connection URI (``AIRFLOW_CONN_<ID>``) for :class:`SmtpSink`: plain SMTP, no TLS."""
    return (
        f"smtp://{host}:{port}?disable_tls=true&disable_ssl=true&retry_limit=0&timeout=10"
        "&from_email=driftloop%40example.org"
    )


def _subject(message: Message) -> str:
    from email.header import decode_header, make_header

    return str(make_header(decode_header(message["Subject"])))


def serve_forever(out_path: str, smtp_port: int, http_port: int) -> None:
    """Both receivers on every interface, appending each alert to ``out_path`` as one JSON line."""
    lock = threading.Lock()

    def record(entry: dict) -> None:
        with lock, open(out_path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")

    open(out_path, "a").close()
    SmtpSink(host="0.0.0.0", port=smtp_port, record=record)  # inside a test network only
    WebhookReceiver(host="0.0.0.0", port=http_port, record=record)
    print(f"alert sink: SMTP :{smtp_port}, webhook :{http_port}/hook, writing {out_path}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--smtp-port", type=int, default=2525)
    parser.add_argument("--http-port", type=int, default=8025)
    args = parser.parse_args()
    serve_forever(args.out, args.smtp_port, args.http_port)
