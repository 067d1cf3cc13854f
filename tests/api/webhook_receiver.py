#!/usr/bin/env python3
"""The webhook receiver of the API tests (driven by tests/api/receiver.rs).

It checks every delivery with the Standard Webhooks reference library for Python
(`standardwebhooks`, installed by .ci/webhook-tools), an implementation that is not saaskit's,
keeps what it accepted and what it refused, and answers as each endpoint is told to: a status, a
delay, or a number of failures to come.

    python webhook_receiver.py [--port N] [--state FILE] [--exit-with-stdin]

prints `listening <port>` once it is ready. Deliveries: `POST /hooks/<name>`. Control (JSON):
    PUT  /_control/endpoints/<name>  {secrets, status, delay_ms, fail_next}  creates, or changes
                                      only the fields given
    PUT  /_control/clock             {now: <unix seconds> | null}  the time the library verifies
                                      at (null: the wall clock)
    GET  /_control/received?name=N   {received, rejected, attempts, history}
    POST /_control/reset             forgets everything
"""

import argparse
import json
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import standardwebhooks
import standardwebhooks.webhooks as library

DEFAULTS = {"secrets": [], "status": 204, "delay_ms": 0, "fail_next": 0}

# The library checks a message's timestamp against its own `datetime.now()`, within five
# minutes. saaskit's tests run on a manual clock far from the wall clock, so the tests choose the
# time the library verifies at; the signature itself is still checked by the library alone.
_verify_at = None


class _LibraryClock(datetime):
    @classmethod
    def now(cls, tz=None):
        if _verify_at is None:
            return datetime.now(tz)
        return datetime.fromtimestamp(_verify_at, tz or timezone.utc)


library.datetime = _LibraryClock


def _check_the_library_reads_our_clock():
    """Fails at start, not in a puzzling test, if a new version of the library reads the time
    some other way."""
    global _verify_at
    webhook = standardwebhooks.Webhook(b"a key for the receiver's own check")
    long_ago = datetime(2000, 1, 1, tzinfo=timezone.utc)
    headers = {
        "webhook-id": "msg_check",
        "webhook-timestamp": str(int(long_ago.timestamp())),
        "webhook-signature": webhook.sign("msg_check", long_ago, b"{}"),
    }
    _verify_at = long_ago.timestamp()
    try:
        webhook.verify(b"{}", headers)
    except standardwebhooks.WebhookVerificationError as error:
        sys.exit(f"standardwebhooks no longer reads the time through datetime.now: {error}")
    finally:
        _verify_at = None


def _now_rfc3339():
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class State:
    """Everything the receiver knows, behind one lock, saved to a file after each change when
    given one, so that a receiver restarted on the same file (the endpoint down, then up again)
    still has what it received before."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.path = path
        self.endpoints = {}  # name -> settings, as DEFAULTS
        self.webhooks = {}  # name -> [standardwebhooks.Webhook], one per secret
        self.records = {}  # name -> {received, rejected, attempts, history}
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            for name, settings in saved["endpoints"].items():
                self.configure(name, settings)
            self.records = saved["records"]
            self.set_clock(saved["now"])

    def configure(self, name, changes):
        unknown = set(changes) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown fields: {sorted(unknown)}")
        settings = dict(self.endpoints.get(name, DEFAULTS), **changes)
        secrets = settings["secrets"]
        if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
            raise ValueError("secrets: a list of strings")
        for field in ("status", "delay_ms", "fail_next"):
            if not isinstance(settings[field], int) or settings[field] < 0:
                raise ValueError(f"{field}: a non-negative integer")
        if not 200 <= settings["status"] <= 599:
            raise ValueError("status: an HTTP status")
        try:
            webhooks = [standardwebhooks.Webhook(s) for s in secrets]
        except Exception as error:
            raise ValueError(f"secrets: {error}") from error
        self.endpoints[name] = settings
        self.webhooks[name] = webhooks
        return settings

    def set_clock(self, now):
        global _verify_at
        if now is not None and not isinstance(now, (int, float)):
            raise ValueError("now: unix seconds, or null for the wall clock")
        _verify_at = now

    def records_of(self, name):
        return self.records.setdefault(
            name, {"received": [], "rejected": [], "attempts": 0, "history": []}
        )

    def reset(self):
        self.endpoints, self.webhooks, self.records = {}, {}, {}
        self.set_clock(None)

    def save(self):
        if not self.path:
            return
        # Written aside and moved into place: a receiver killed mid-write leaves the old state.
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump({"endpoints": self.endpoints, "records": self.records, "now": _verify_at}, f)
        os.replace(temporary, self.path)

    def deliver(self, name, body, headers):
        """Judges one delivery: (status to answer, why it was refused if it was, delay in
        seconds before answering)."""
        records = self.records_of(name)
        records["attempts"] += 1
        seen = {
            "name": name,
            "webhook_id": headers.get("webhook-id"),
            "webhook_timestamp": headers.get("webhook-timestamp"),
            "signatures": headers.get("webhook-signature"),
            "received_at": _now_rfc3339(),
        }
        settings = self.endpoints.get(name)
        if settings is None:
            status, outcome, error = 404, "rejected", f"no endpoint named {name!r}"
        else:
            verified_by, errors = None, []
            for index, webhook in enumerate(self.webhooks[name]):
                try:
                    webhook.verify(body, headers, json_parse=False)
                    verified_by = index
                    break
                except Exception as e:  # the library's verdict, or a header it could not read
                    if str(e) not in errors:
                        errors.append(str(e))
            if verified_by is None:
                error = "; ".join(errors) or "the endpoint has no secrets"
                status, outcome = 400, "rejected"
            elif settings["fail_next"] > 0:
                settings["fail_next"] -= 1
                status, outcome, error = 500, "failed", None
            else:
                status, outcome, error = settings["status"], "received", None
        if outcome == "received":
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                payload = {}
            records["received"].append(
                dict(
                    seen,
                    type=payload.get("type"),
                    timestamp=payload.get("timestamp"),
                    data=payload.get("data"),
                    verified_by=verified_by,
                    headers=headers,
                    body=body.decode("utf-8", "replace"),
                )
            )
        elif outcome == "rejected":
            records["rejected"].append(
                dict(seen, error=error, headers=headers, body=body.decode("utf-8", "replace"))
            )
        records["history"].append(
            {
                "webhook_id": seen["webhook_id"],
                "webhook_timestamp": seen["webhook_timestamp"],
                "outcome": outcome,
                "status": status,
                "received_at": seen["received_at"],
            }
        )
        self.save()
        return status, error, (settings["delay_ms"] / 1000 if settings else 0)


class Handler(BaseHTTPRequestHandler):
    server_version = "saaskit-webhook-receiver"

    def log_message(self, format, *args):
        pass  # a line per request would drown the test output; refusals are in `rejected`

    def do_POST(self):
        path = urlsplit(self.path).path
        body = self.read_body()
        state = self.server.state
        if path.startswith("/hooks/") and len(path) > len("/hooks/"):
            name = unquote(path[len("/hooks/") :])
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                status, error, delay = state.deliver(name, body, headers)
            if delay:
                time.sleep(delay)
            self.answer(status, None if status == 204 else {"status": status, "error": error})
        elif path == "/_control/reset":
            with state.lock:
                state.reset()
                state.save()
            self.answer(200, {})
        else:
            self.answer(404, {"error": f"nothing at POST {path}"})

    def do_PUT(self):
        path = urlsplit(self.path).path
        try:
            changes = json.loads(self.read_body() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("a JSON object")
        except ValueError as error:
            return self.answer(400, {"error": f"the body: {error}"})
        state = self.server.state
        try:
            with state.lock:
                if path.startswith("/_control/endpoints/") and len(path) > len("/_control/endpoints/"):
                    answer = state.configure(unquote(path[len("/_control/endpoints/") :]), changes)
                elif path == "/_control/clock":
                    state.set_clock(changes.get("now"))
                    answer = {"now": _verify_at}
                else:
                    return self.answer(404, {"error": f"nothing at PUT {path}"})
                state.save()
        except ValueError as error:
            return self.answer(400, {"error": str(error)})
        self.answer(200, answer)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != "/_control/received":
            return self.answer(404, {"error": f"nothing at GET {url.path}"})
        names = parse_qs(url.query).get("name")
        if not names:
            return self.answer(400, {"error": "which endpoint? ?name=<name>"})
        state = self.server.state
        with state.lock:
            # A copy taken under the lock: the answer is written after it is released.
            answer = json.loads(json.dumps(state.records_of(names[0])))
        self.answer(200, answer)

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def answer(self, status, payload):
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            if payload is not None:
                self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up waiting (a delay longer than its timeout): as a real endpoint


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default of 5 resets connections when a delivery worker sends many at once.
    request_queue_size = 128


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="default: any free port")
    parser.add_argument("--state", help="a file to keep the state in, across restarts")
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="exit when stdin closes (the test that started it is gone)",
    )
    args = parser.parse_args()

    _check_the_library_reads_our_clock()
    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args.state)
    if args.exit_with_stdin:

        def exit_when_stdin_closes():
            sys.stdin.buffer.read()
            os._exit(0)

        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
