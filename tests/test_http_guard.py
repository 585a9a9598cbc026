"""The daemon's HTTP port against real requests on loopback: who may change state (token, Unix socket,
Origin, Host, JSON only, rate limit), connections bounded in time, malformed requests answered in one line,
``/metrics`` negotiated as prometheus_client does it, and the landing page."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from hedgewatch.service.config import HttpConfig
from hedgewatch.service.errors import SecretError
from hedgewatch.service.http import HttpServer, from_loopback, host_name, printable
from hedgewatch.service.metrics import Metrics

TOKEN = "s3cret-token-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Calls:
    def __init__(self) -> None:
        self.rebalances = 0
        self.acks: list[tuple[dict[str, Any], str]] = []

    def rebalance(self) -> dict[str, Any]:
        self.rebalances += 1
        return {"rebalanced": True}

    def ack(self, body: dict[str, Any], by: str) -> dict[str, Any]:
        self.acks.append((body, by))
        return {"acknowledged": True}


@asynccontextmanager
async def serving(tmp_path: Path, *, token: bool = True, host: str = "127.0.0.1",
                  clock: Callable[[], float] | None = None, **settings: Any) -> AsyncIterator[tuple[HttpServer, Calls]]:
    if token:
        (tmp_path / "token").write_text(TOKEN + "\n")
        settings["token_file"] = str(tmp_path / "token")
    calls = Calls()
    cfg = HttpConfig(host=host, port=0, **settings)
    srv = HttpServer(host, 0, Metrics(), ready=lambda: (True, {}), state=lambda: {"index": "HW"},
                     rebalance=calls.rebalance, hedge_ack=calls.ack, settings=cfg,
                     **({"clock": clock} if clock else {}))
    await srv.start()
    try:
        yield srv, calls
    finally:
        await srv.close()


def url(srv: HttpServer, path: str = "") -> str:
    return f"http://127.0.0.1:{srv.port}{path}"


BEARER = {"Authorization": f"Bearer {TOKEN}"}


# --- who may change state ----------------------------------------------------------------------------


async def test_a_cross_origin_form_post_is_refused(tmp_path: Path) -> None:
    async with serving(tmp_path) as (srv, calls), httpx.AsyncClient() as http:
        # what a page on another site can make a browser send: a form, with that site's Origin
        evil = await http.post(url(srv, "/rebalance"), data={"x": "1"},
                               headers={"Origin": "http://evil.example", **BEARER})
        assert evil.status_code == 403 and "cross-origin" in evil.json()["error"]
        null = await http.post(url(srv, "/hedge/ack"), json={}, headers={"Origin": "null", **BEARER})
        assert null.status_code == 403
        # a form from the daemon's own origin is still not JSON
        form = await http.post(url(srv, "/hedge/ack"), data={"contracts": "-3"},
                               headers={"Origin": f"http://127.0.0.1:{srv.port}", **BEARER})
        assert form.status_code == 415
        plain = await http.post(url(srv, "/hedge/ack"), content=b"{}",
                                headers={"Content-Type": "text/plain", **BEARER})
        assert plain.status_code == 415
        same = await http.post(url(srv, "/hedge/ack"), json={"contracts": -3},
                               headers={"Origin": f"http://127.0.0.1:{srv.port}", **BEARER})
        assert same.status_code == 200
    assert calls.rebalances == 0 and calls.acks == [({"contracts": -3}, "http:127.0.0.1")]


async def test_the_token_is_required_over_tcp(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hedgewatch.http")
    async with serving(tmp_path) as (srv, calls), httpx.AsyncClient() as http:
        missing = await http.post(url(srv, "/rebalance"))
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = await http.post(url(srv, "/rebalance"), headers={"Authorization": "Bearer " + "x" * 29})
        assert wrong.status_code == 403
        assert calls.rebalances == 0
        right = await http.post(url(srv, "/rebalance"), headers=BEARER)
        assert right.status_code == 200 and right.json() == {"rebalanced": True}
        # the token as a URL's password (Basic), which is how `hedgewatch rebalance --url` can carry it
        basic = await http.post(f"http://hedgewatch:{TOKEN}@127.0.0.1:{srv.port}/rebalance")
        assert basic.status_code == 200
        ack = await http.post(url(srv, "/hedge/ack"), json={"advice_id": "HW-1"}, headers=BEARER)
        assert ack.status_code == 200
    assert calls.rebalances == 2
    lines = [r for r in caplog.records if r.getMessage().startswith(("http: POST", "http: refused POST"))]
    assert len(lines) == 5  # one line per request, served or refused
    assert all("127.0.0.1:" in r.getMessage() for r in lines)  # who asked
    assert [r.levelno for r in lines] == [logging.WARNING] * 2 + [logging.INFO] * 3
    assert not any(TOKEN in r.getMessage() for r in caplog.records)


async def test_without_a_token_file_tcp_posts_are_refused_and_the_unix_socket_serves(tmp_path: Path) -> None:
    sock = tmp_path / "hw.sock"
    async with serving(tmp_path, token=False, unix_socket=str(sock)) as (srv, calls):
        async with httpx.AsyncClient() as http:
            tcp = await http.post(url(srv, "/rebalance"), headers=BEARER)
            assert tcp.status_code == 403 and "token_file" in tcp.json()["error"]
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(sock))) as unix:
            resp = await unix.post("http://hedgewatch/rebalance")
            assert resp.status_code == 200 and resp.json() == {"rebalanced": True}
            ack = await unix.post("http://hedgewatch/hedge/ack", json={"contracts": -1})
            assert ack.status_code == 200
            assert (await unix.get("http://hedgewatch/state")).json() == {"index": "HW"}
            form = await unix.post("http://hedgewatch/hedge/ack", data={"contracts": "-3"})
            assert form.status_code == 415
    assert calls.rebalances == 1 and calls.acks == [({"contracts": -1}, "http:unix")]
    assert not sock.exists()  # removed at close


async def test_a_burst_of_posts_gets_429_until_the_bucket_refills(tmp_path: Path) -> None:
    clock = Clock()
    async with serving(tmp_path, clock=clock, control_burst=3, control_rate_per_s=0.25) as (srv, calls), \
            httpx.AsyncClient(headers=BEARER) as http:
        codes = [(await http.post(url(srv, "/rebalance"))).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        limited = await http.post(url(srv, "/rebalance"))
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "4"
        # another endpoint has its own bucket
        assert (await http.post(url(srv, "/hedge/ack"), json={})).status_code == 200
        clock.t += 4.0
        assert (await http.post(url(srv, "/rebalance"))).status_code == 200
    assert calls.rebalances == 4


async def test_host_must_be_this_daemons_against_dns_rebinding(tmp_path: Path) -> None:
    async with serving(tmp_path, allowed_hosts=("hedgewatch.internal",)) as (srv, calls), \
            httpx.AsyncClient(headers=BEARER) as http:
        # a page on attacker.example whose name now resolves to 127.0.0.1: same origin for the browser
        rebound = {"Host": f"attacker.example:{srv.port}", "Origin": f"http://attacker.example:{srv.port}"}
        post = await http.post(url(srv, "/rebalance"), headers=rebound)
        assert post.status_code == 403 and "Host" in post.json()["error"]
        get = await http.get(url(srv, "/state"), headers=rebound)
        assert get.status_code == 403
        for host in (f"localhost:{srv.port}", f"127.0.0.1:{srv.port}", "hedgewatch.internal"):
            assert (await http.get(url(srv, "/state"), headers={"Host": host})).status_code == 200
        assert (await http.post(url(srv, "/rebalance"), headers={"Host": f"localhost:{srv.port}"})).status_code == 200
    assert calls.rebalances == 1


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 on this host")
async def test_bound_on_all_addresses_an_ipv4_mapped_loopback_peer_is_loopback(tmp_path: Path) -> None:
    async with serving(tmp_path, host="::") as (srv, calls), httpx.AsyncClient(headers=BEARER) as http:
        resp = await http.post(url(srv, "/hedge/ack"), json={})  # over IPv4, to a socket bound on ::
        assert resp.status_code == 200, resp.text
        v6 = await http.post(f"http://[::1]:{srv.port}/rebalance")
        assert v6.status_code == 200
    assert calls.acks == [({}, "http:::ffff:127.0.0.1")]


def test_peer_and_host_names() -> None:
    assert from_loopback("127.0.0.1") and from_loopback("::1") and from_loopback("127.3.2.1")
    assert from_loopback("::ffff:127.0.0.1")
    assert not from_loopback("::ffff:10.0.0.7") and not from_loopback("10.0.0.7")
    assert not from_loopback(None) and not from_loopback("not an address")
    assert host_name("LocalHost:9108") == "localhost" and host_name("[::1]:9108") == "::1"
    assert host_name("example.org.") == "example.org"
    assert printable("a\nb\x00\u00e9" + "x" * 100) == "a\\nb\\x00\\xe9" + "x" * 68 + "..."


@pytest.mark.parametrize("content", ["short\n", "", "with space in it 0123456789\n"])
async def test_an_unusable_token_file_is_one_line_naming_the_setting(tmp_path: Path, content: str) -> None:
    (tmp_path / "token").write_text(content)
    srv = HttpServer("127.0.0.1", 0, Metrics(), ready=lambda: (True, {}), state=dict,
                     settings=HttpConfig(port=0, token_file=str(tmp_path / "token")))
    with pytest.raises(SecretError) as err:
        await srv.start()
    msg = str(err.value)
    assert msg.startswith("http.token_file") and "\n" not in msg
    assert not content.strip() or content.strip() not in msg
    missing = HttpServer("127.0.0.1", 0, Metrics(), ready=lambda: (True, {}), state=dict,
                         settings=HttpConfig(port=0, token_file=str(tmp_path / "nope")))
    with pytest.raises(SecretError, match=r"^http.token_file: cannot read secret file"):
        await missing.start()


# --- connections bounded in time, malformed requests ---------------------------------------------------


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await reader.read()


async def test_idle_and_slow_connections_are_closed_and_the_server_still_answers(tmp_path: Path) -> None:
    bound = 0.5
    async with serving(tmp_path, timeout_s=bound) as (srv, _):
        loop = asyncio.get_running_loop()
        conns = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(50)]
        # one more that sends its headers a byte at a time, slower than the bound allows in total
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", srv.port)
        started = loop.time()

        async def dribble() -> None:
            for b in b"GET /state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"y" * 200:
                if slow_w.is_closing():
                    return
                slow_w.write(bytes([b]))
                try:
                    await slow_w.drain()
                except ConnectionError:
                    return
                await asyncio.sleep(0.02)

        feeder = asyncio.create_task(dribble())
        async with asyncio.timeout(bound + 3):
            leftovers = await asyncio.gather(*(_closed(r) for r, _ in conns), _closed(slow_r))
        took = loop.time() - started
        feeder.cancel()
        assert all(x == b"" for x in leftovers)  # closed without an answer
        assert took < bound + 2.0
        async with httpx.AsyncClient() as http:
            assert (await http.get(url(srv, "/healthz"))).status_code == 200
        for _, w in [*conns, (slow_r, slow_w)]:
            w.close()


async def test_a_post_body_that_does_not_arrive_in_time_is_refused(tmp_path: Path) -> None:
    bound = 0.5
    async with serving(tmp_path, timeout_s=bound) as (srv, calls):
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(f"POST /hedge/ack HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"con".encode())
        await writer.drain()
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(bound + 3):
            answer = await reader.readuntil(b"\r\n\r\n")
        assert asyncio.get_running_loop().time() - started < bound + 2.0
        assert answer.split(b" ")[1] == b"400"
        writer.close()
    assert calls.acks == []


async def test_a_malformed_request_is_a_one_line_400_and_one_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(tmp_path) as (srv, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /state HTTP/1.1\r\nHost: 127.0.0.1\r\nBad\x1b[31mHeader\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
        async with httpx.AsyncClient() as http:
            assert (await http.get(url(srv, "/healthz"))).status_code == 200
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400"
    assert body == b"400 Bad Request\n"
    records = [r for r in caplog.records if r.levelno >= logging.INFO and "malformed" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert records[0].exc_info is None and records[0].exc_text is None
    assert "\x1b" not in records[0].getMessage() and "\n" not in records[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- /metrics and / -----------------------------------------------------------------------------------


async def test_metrics_are_negotiated_as_prometheus_client_does(tmp_path: Path) -> None:
    async with serving(tmp_path) as (srv, _), httpx.AsyncClient() as http:
        plain = await http.get(url(srv, "/metrics"), headers={"Accept-Encoding": "identity"})
        assert plain.headers["content-type"].startswith("text/plain; version=")
        assert "content-encoding" not in plain.headers and "process_cpu_seconds_total" in plain.text
        raw = await http.send(http.build_request("GET", url(srv, "/metrics"),
                                                 headers={"Accept-Encoding": "gzip"}), stream=True)
        assert raw.headers["content-encoding"] == "gzip"
        body = b"".join([chunk async for chunk in raw.aiter_raw()])  # as sent, not decoded
        assert b"process_cpu_seconds_total" in gzip.decompress(body)
        await raw.aclose()
        om = await http.get(url(srv, "/metrics"), headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.rstrip().endswith("# EOF")


async def test_the_landing_page_links_every_page(tmp_path: Path) -> None:
    async with serving(tmp_path) as (srv, _), httpx.AsyncClient() as http:
        page = await http.get(url(srv, "/"))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for path in ("/metrics", "/healthz", "/readyz", "/state"):
            assert f'href="{path}"' in page.text
            assert (await http.get(url(srv, path))).status_code == 200
        assert "POST /rebalance" in page.text
        assert (await http.get(url(srv, "/nope"))).status_code == 404
        assert (await http.get(url(srv, "/rebalance"))).status_code == 405
