"""The JSON sender against a real receiver on loopback that misbehaves in every way it can."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from headwater.adapters.delivery import JsonPoster, Outcome
from headwater.adapters.metrics import Metrics
from helpers import wait_for

pytestmark = pytest.mark.integration


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedReceiver:
    """A raw TCP server that answers each request with the next behaviour of its script, then 201 for good.

    Behaviours: ``garbage`` (not HTTP at all), ``500``, ``redirect`` (302 to ``redirect_to``), ``hang``
    (reads the request and never answers), ``201``, or the raw bytes of an answer.
    """

    script: list[str | bytes]
    redirect_to: str = ""
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._closing = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
                behaviour = self.script.pop(0) if self.script else "201"
            if behaviour == "hang":
                self._closing.wait(60)
                return
            if isinstance(behaviour, bytes):
                conn.sendall(behaviour)
                return
            answers = {
                "garbage": b"\x00\x01 this is not HTTP \xff\r\n\r\n",
                "500": b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                "redirect": (f"HTTP/1.1 302 Found\r\nLocation: {self.redirect_to}\r\n"
                             "Content-Length: 0\r\n\r\n").encode(),
                "201": b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
            }
            conn.sendall(answers[behaviour])


def _read_request(conn: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return Request(lines[0].split(" ")[1], headers, body)


@pytest.fixture
def target() -> Iterator[ScriptedReceiver]:
    """Where the redirect points: it must never hear from the sender."""
    server = ScriptedReceiver([])
    yield server
    server.close()


def test_a_receiver_answering_garbage_500_a_redirect_and_then_hanging_never_stops_delivery(
        target: ScriptedReceiver) -> None:
    receiver = ScriptedReceiver(["garbage", "500", "redirect", "hang"], redirect_to=target.url)
    metrics = Metrics()
    outcomes: dict[int, Outcome] = {}
    poster = JsonPoster(receiver.url, "s3cret", name="alerts", metrics=metrics, attempts=4, timeout=2.0,
                        first_delay=0.01)
    poster.start()
    try:
        for n in (1, 2, 3):
            poster.send({"n": n}, on_done=lambda outcome, n=n: outcomes.__setitem__(n, outcome))
        wait_for(lambda: len(outcomes) == 3, timeout=60, message="every payload to reach an outcome")
    finally:
        poster.stop()
        receiver.close()
    # 1: garbage, 500, then a redirect: refused and never retried; 2: no answer, then delivered; 3: delivered
    assert outcomes == {1: Outcome.REJECTED, 2: Outcome.DELIVERED, 3: Outcome.DELIVERED}
    assert [r.body for r in receiver.requests] == [b'{"n":1}'] * 3 + [b'{"n":2}'] * 2 + [b'{"n":3}']
    assert all(r.headers["authorization"] == "Bearer s3cret" for r in receiver.requests)
    assert target.requests == []

    def counted(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"sender": "alerts", **labels})

    assert counted("headwater_delivery_sent_total") == 2
    assert counted("headwater_delivery_errors_total", reason="protocol") == 1
    assert counted("headwater_delivery_errors_total", reason="5xx") == 1
    assert counted("headwater_delivery_errors_total", reason="3xx") == 1
    assert counted("headwater_delivery_errors_total", reason="timeout") == 1
    assert counted("headwater_delivery_dropped_total", reason="rejected") == 1
    assert counted("headwater_delivery_queue_bytes") == 0


def test_a_4xx_is_not_retried_but_429_is_after_its_retry_after() -> None:
    receiver = ScriptedReceiver([b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n",
                                 b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                                 b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"])
    outcomes: list[Outcome] = []
    poster = JsonPoster(receiver.url, name="openlineage", attempts=5, timeout=2.0, first_delay=0.01)
    poster.start()
    try:
        poster.send({"n": 1}, on_done=outcomes.append)
        poster.send({"n": 2}, on_done=outcomes.append)
        wait_for(lambda: len(outcomes) == 2, timeout=30, message="both payloads to reach an outcome")
    finally:
        poster.stop()
        receiver.close()
    assert outcomes == [Outcome.DELIVERED, Outcome.REJECTED]
    assert [r.body for r in receiver.requests] == [b'{"n":1}', b'{"n":1}', b'{"n":2}']


def test_the_queue_is_bounded_by_bytes_and_counts_what_it_drops() -> None:
    metrics = Metrics()
    poster = JsonPoster("http://127.0.0.1:9/never", name="openlineage", metrics=metrics, max_queue_bytes=100)
    outcomes: list[Outcome] = []
    accepted = [poster.send({"pad": "x" * 30}, on_done=outcomes.append) for _ in range(5)]  # 40 bytes each
    assert accepted == [True, True, False, False, False]
    assert poster.queued_bytes == 80
    assert outcomes == [Outcome.DROPPED] * 3
    assert metrics.registry.get_sample_value(
        "headwater_delivery_dropped_total", {"sender": "openlineage", "reason": "queue_full"}) == 3
    poster.stop()  # never started: what is queued is dropped and told so
    assert outcomes == [Outcome.DROPPED] * 5
    assert poster.queued_bytes == 0
