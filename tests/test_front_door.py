"""The front door of `newsletter serve` (pipeline/web/front_door.py): it answers a mail
client's RFC 8058 one-click POST itself and hands every other connection to waitress.

What must hold: it takes exactly that request and nothing it is not sure of; whatever it
hands on is served by waitress as if waitress had accepted it (the bytes already read
included); an opt-out is answered only once it is recorded, once; a stop answers the ones in
hand; a ledger that hangs gets a 503, not a connection held for ever.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from pipeline.messages.unsubscribe import make_token
from pipeline.web import front_door
from pipeline.web.front_door import HAND_OVER, NOT_YET, OneClickPost, recognise

from .test_one_click import ADA, consent, flask_requests, queued
from .web_helpers import Served, rows_for, serve, with_signup

BODY = b"List-Unsubscribe=One-Click"


def post(
    query: str = "token=abc.def", headers: str = "", body: bytes = BODY, close: bool = True
) -> bytes:
    ending = "Connection: close\r\n" if close else ""
    return (
        f"POST /unsubscribe?{query} HTTP/1.1\r\nHost: news.example\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n{ending}{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# What it takes ------------------------------------------------------------------------------


def test_a_mail_clients_post_is_recognised() -> None:
    found = recognise(post(headers="User-Agent: Gmail one-click\r\nX-Forwarded-For: 1.2.3.4\r\n"))
    assert found == OneClickPost("token=abc.def", "Gmail one-click", "1.2.3.4")


def test_every_prefix_of_it_is_read_on() -> None:
    whole = post()
    for cut in range(len(whole)):
        assert recognise(whole[:cut]) is NOT_YET, whole[:cut]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /unsubscribe?token=abc HTTP/1.1\r\n\r\n",
        b"POST /subscribe HTTP/1.1\r\n",
        b"post /unsubscribe?token=abc HTTP/1.1\r\nContent-Length: 26\r\n\r\n" + BODY,
        post().replace(b"HTTP/1.1", b"HTTP/2.0"),
        post().replace(b"/unsubscribe?", b"/unsubscribe/?"),
        post(query="token=abc#x"),
        post(query="token=a b"),
        post(body=b"List-Unsubscribe=One-Clack"),
        post() + b"GET / HTTP/1.1\r\n\r\n",  # a second request behind it
        post(headers="Content-Length: 26\r\n"),  # twice
        post(headers="Transfer-Encoding: chunked\r\n"),
        post(headers="Expect: 100-continue\r\n"),
        post(headers="User-Agent: a\r\n folded\r\n"),
        post(headers="User-Agent: a\r\nUser-Agent: b\r\n"),
        post(headers="X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n"),
        post(headers="User-Agent:\ta\r\n"),
        post(headers="X_Forwarded_For: 1.2.3.4\r\n"),
        post(headers="User-Agent: café\r\n"),
        post(headers="Broken header line\r\n"),
        post(headers="X-Long: " + "a" * 17_000 + "\r\n"),
    ],
)
def test_anything_else_or_anything_unusual_is_handed_over(request_bytes: bytes) -> None:
    assert recognise(request_bytes) is HAND_OVER


def test_a_body_that_is_not_rfc_8058s_is_handed_over_as_soon_as_it_differs() -> None:
    assert recognise(post(body=b"List-Unsub")[:-10] + b"List-Unsx") is HAND_OVER


# What it does -------------------------------------------------------------------------------


def raw(served: Served, data: bytes, *, pause: float = 0.0, step: int = 0) -> bytes:
    """Send ``data`` on a connection of its own (in pieces of ``step`` bytes, ``pause``
    seconds apart, when asked), and read everything the server sends until it closes."""
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=15) as connection:
        pieces = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
        for piece in pieces:
            connection.sendall(piece)
            time.sleep(pause)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def token_query(served: Served, address: str = ADA) -> str:
    return f"token={make_token(served.secret, address)}"


def test_its_answer_closes_the_connection_and_says_who_answered(project: Path) -> None:
    with serve(with_signup(project)) as served:
        reached = flask_requests(served)
        answer = raw(served, post(query=token_query(served)))
        head, _, page = answer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK"
        assert "Connection: close" in lines and "Server: newsletter" in lines
        assert f"Content-Length: {len(page)}" in lines
        assert any(line.startswith("Date: ") and line.endswith(" GMT") for line in lines)
        names = [line.split(":")[0] for line in lines[1:]]
        assert names == sorted(names)  # as waitress orders them
        assert b"a***@example.org will get no more emails" in page
        assert reached == []
        assert consent(served, ADA)[0][0] == "unsubscribed/one-click"


def test_nginx_forwarding_a_mail_clients_post_is_answered_here(project: Path) -> None:
    """As README's nginx block passes it on: HTTP/1.0 (nginx's default to an upstream), its
    Connection: close and X-Forwarded-* headers; the address is the reader's, not nginx's."""
    nginx = (
        "POST /unsubscribe?{query} HTTP/1.0\r\nHost: movementsolutions.example\r\n"
        "X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: movementsolutions.example\r\nConnection: close\r\n"
        "Content-Length: 26\r\nUser-Agent: Mozilla/5.0 (one-click)\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    with serve(with_signup(project), proxies=1) as served:
        reached = flask_requests(served)
        request = nginx.format(query=token_query(served)).encode() + BODY
        assert recognise(request) != HAND_OVER
        answer = raw(served, request)
        assert answer.startswith(b"HTTP/1.0 200 OK") and b"You are unsubscribed" in answer
        assert reached == []
        assert consent(served, ADA) == [
            ("unsubscribed/one-click", "198.51.100.7", "Mozilla/5.0 (one-click)")
        ]


def test_a_request_trickling_in_slower_than_it_waits_is_served_by_waitress(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handed over part-read: waitress must see the bytes the front door already took."""
    monkeypatch.setattr(front_door, "WAIT", 0.3)
    handed: list[bytes] = []
    hand_over = front_door.FrontDoor._hand_over

    def noting(door: object, listener: object, connection: object, address: object, data: bytes):  # type: ignore[no-untyped-def]
        handed.append(data)
        return hand_over(door, listener, connection, address, data)  # type: ignore[arg-type]

    monkeypatch.setattr(front_door.FrontDoor, "_hand_over", noting)
    with serve(with_signup(project)) as served:
        whole = post(query=token_query(served))
        answer = raw(served, whole, pause=0.05, step=20)
        assert answer.startswith(b"HTTP/1.1 200 OK") and b"You are unsubscribed" in answer
        # Handed over part-read, and waitress (then the WSGI middleware) answered it.
        assert len(handed) == 1 and whole.startswith(handed[0]) and handed[0] != whole
        assert [event[0] for event in consent(served, ADA)] == ["unsubscribed/one-click"]


def test_a_request_behind_the_opt_out_on_the_same_connection_is_answered_too(
    project: Path,
) -> None:
    with serve(with_signup(project)) as served:
        second = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answer = raw(served, post(query=token_query(served), close=False) + second)
        assert answer.count(b"HTTP/1.1 200 OK") == 2 and b'"status"' in answer
        assert [event[0] for event in consent(served, ADA)] == ["unsubscribed/one-click"]


def test_a_forged_token_goes_on_to_the_view(project: Path) -> None:
    with serve(with_signup(project)) as served:
        forged = make_token(b"another secret entirely, 32 bytes", ADA)
        answer = raw(served, post(query=f"token={forged}"))
        assert answer.startswith(b"HTTP/1.1 400") and b"This link is not valid" in answer
        assert consent(served, ADA) == []


def test_a_silent_connection_is_handed_over_and_a_request_after_it_served(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(front_door, "WAIT", 0.2)
    with serve(with_signup(project)) as served:
        answer = raw(
            served, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", pause=0.5
        )
        assert answer.startswith(b"HTTP/1.1 200 OK")


def test_200_at_once_are_each_recorded_once(project: Path) -> None:
    addresses = [f"reader{i:03d}@example.org" for i in range(200)]
    subscribers = project / "subscribers.csv"
    with subscribers.open("a", encoding="utf-8") as out:
        out.writelines(f"{address},Reader,,subscribed,runners\n" for address in addresses)
    with serve(with_signup(project)) as served:
        queries = [token_query(served, address) for address in addresses]
        start = threading.Barrier(len(queries))

        def one(query: str) -> bytes:
            start.wait()
            return raw(served, post(query=query))

        with ThreadPoolExecutor(len(queries)) as pool:
            answers = list(pool.map(one, queries))
        assert all(a.startswith(b"HTTP/1.1 200 OK") for a in answers)
        assert queued(served) == 200
        served.settle()
        for address in addresses[::37]:
            assert [event[0] for event in consent(served, address)] == ["unsubscribed/one-click"]
            assert rows_for(served.settings, address)[0]["status"] == "unsubscribed"


def test_the_clients_address_is_the_proxys_word_only_with_a_trusted_proxy(project: Path) -> None:
    """Behind nginx (``--proxies 1``) the reader's address is X-Forwarded-For's last hop, on
    the front door's path as in the view's (ProxyFix decides both).  The view's was nginx's
    own: waitress deletes X-Forwarded-For unless told the app trusts a proxy."""
    forwarded = "X-Forwarded-For: 198.51.100.7, 203.0.113.9\r\n"
    with serve(with_signup(project), proxies=1) as served:
        assert raw(served, post(query=token_query(served), headers=forwarded)).startswith(
            b"HTTP/1.1 200"
        )
        other = "ben.lifter@example.org"
        via_flask = requests.post(
            f"{served.url}/unsubscribe?{token_query(served, other)}",
            data=BODY + b"&from=page",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Forwarded-For": "198.51.100.7, 203.0.113.9",
            },
            timeout=10,
        )
        assert via_flask.status_code == 200
        assert consent(served, ADA)[0][1] == consent(served, other)[0][1] == "203.0.113.9"


def test_a_ledger_that_hangs_is_a_503_and_the_opt_out_still_lands_once(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(front_door, "ANSWER_WAIT", 0.5)
    import pipeline.web.subscriptions as subscriptions

    real = subscriptions.queue_change
    finished = threading.Event()

    def slow_disk(*args: object, **kwargs: object) -> int:
        time.sleep(2.5)
        try:
            return real(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            finished.set()

    monkeypatch.setattr(subscriptions, "queue_change", slow_disk)
    with serve(with_signup(project)) as served:
        answer = raw(served, post(query=token_query(served)))
        assert answer.startswith(b"HTTP/1.1 503") and b"We could not record that" in answer
        assert any(
            "opt-out NOT recorded: the ledger did not answer in time" in line for line in served.log
        )
        health = requests.get(f"{served.url}/healthz", timeout=10)
        assert health.status_code == 503 and "TimeoutError" in health.json()["problem"]
        monkeypatch.setattr(subscriptions, "queue_change", real)
        assert finished.wait(10)  # the disk caught up: the first one landed after all
        again = raw(served, post(query=token_query(served)))  # the mail client asks again
        assert again.startswith(b"HTTP/1.1 200 OK")
        assert [event[0] for event in consent(served, ADA)] == ["unsubscribed/one-click"]


def test_a_stop_answers_the_opt_outs_waiting_for_the_ledger(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.web.subscriptions as subscriptions

    real = subscriptions.queue_change
    arrived = threading.Event()

    def slow_disk(*args: object, **kwargs: object) -> int:
        arrived.set()
        time.sleep(1.0)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subscriptions, "queue_change", slow_disk)
    answers: list[bytes] = []
    with serve(with_signup(project)) as served:
        query = token_query(served)
        client = threading.Thread(target=lambda: answers.append(raw(served, post(query=query))))
        client.start()
        assert arrived.wait(10)
    # The server has stopped (the with block's end): the opt-out in hand was answered.
    client.join(10)
    assert answers and answers[0].startswith(b"HTTP/1.1 200 OK")
