"""The durable alert path against a real redis-server: outages, restarts, crashes, the bound."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aredis

from hedgewatch.service.alerts import Alert, fingerprint
from hedgewatch.service.keys import Keys
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.outbox import AlertSink, Outbox
from hedgewatch.service.redisconn import redis_factory
from tests.support import RedisServer, free_port, wait_for

KEYS = Keys()


def make_alert(i: int, status: str = "firing") -> Alert:
    fp = fingerprint("r1", "HW", {"n": str(i)})
    return Alert(id=Alert.make_id(fp, status, 1_700_000_000 + i), fingerprint=fp, rule="r1", index="HW",
                 status=status, severity="warning", summary=f"alert {i}", starts_at=1_700_000_000 + i,
                 labels={"n": str(i)})


def sink_for(srv: RedisServer, d: Path, metrics: Metrics | None = None, maxlen: int = 10_000,
             **kw: Any) -> AlertSink:
    return AlertSink(redis_factory(srv.url, timeout_s=1.0), KEYS, d, maxlen, metrics or Metrics(),
                     retry_min_s=0.02, retry_max_s=0.2, **kw)


def segments(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("seg-*.log"))


async def stream_ids(url: str) -> list[str]:
    r = aredis.Redis.from_url(url)
    try:
        entries = await r.xrange(KEYS.alerts_stream)
        return [fields[b"id"].decode() for _, fields in entries]
    finally:
        await r.aclose()


async def test_alerts_submitted_while_redis_is_down_arrive_once_in_order(redis_srv: RedisServer,
                                                                         tmp_path: Path) -> None:
    redis_srv.stop()
    metrics = Metrics()
    sink = sink_for(redis_srv, tmp_path, metrics)
    alerts = [make_alert(i) for i in range(50)]
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sink.run(), name="alert-sink")
        for a in alerts[:30]:
            sink.submit(a)
        await wait_for(lambda: metrics.redis_errors._value.get() >= 2, what="failed delivery attempts")
        for a in alerts[30:]:
            sink.submit(a)
        assert sink.pending == 50
        redis_srv.start()
        await wait_for(lambda: sink.pending == 0, what="outbox drained")
        task.cancel()
    await sink.close()
    assert await stream_ids(redis_srv.url) == [a.id for a in alerts]
    assert metrics.outbox_depth._value.get() == 0
    assert metrics.redis_up._value.get() == 1


async def test_outage_in_the_middle_loses_and_duplicates_nothing(redis_srv: RedisServer,
                                                                 tmp_path: Path) -> None:
    """Redis here keeps no data across restarts, so the stream after the restart holds exactly what was
    submitted while it was down, each once: nothing delivered before is offered again."""
    sink = sink_for(redis_srv, tmp_path)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sink.run(), name="alert-sink")
        for i in range(10):
            sink.submit(make_alert(i))
        await wait_for(lambda: sink.pending == 0, what="first batch delivered")
        redis_srv.stop()
        for i in range(10, 25):
            sink.submit(make_alert(i))
        redis_srv.start()
        await wait_for(lambda: sink.pending == 0, what="second batch delivered")
        task.cancel()
    await sink.close()
    assert await stream_ids(redis_srv.url) == [make_alert(i).id for i in range(10, 25)]


async def test_restart_with_a_non_empty_outbox_delivers_the_rest_once(redis_srv: RedisServer,
                                                                      tmp_path: Path) -> None:
    redis_srv.stop()
    first = sink_for(redis_srv, tmp_path)
    for i in range(20):
        first.submit(make_alert(i))
    assert await first.flush(0.2) == 0  # Redis is down: everything stays on disk

    redis_srv.start()
    second = sink_for(redis_srv, tmp_path)
    assert second.pending == 20
    second.submit(make_alert(20))
    assert await second.flush(5.0) == 21
    assert await stream_ids(redis_srv.url) == [make_alert(i).id for i in range(21)]

    third = sink_for(redis_srv, tmp_path)
    assert third.pending == 0
    await third.close()


async def test_crash_after_redis_took_a_batch_but_before_the_cursor_moved(redis_srv: RedisServer,
                                                                        tmp_path: Path) -> None:
    sink = sink_for(redis_srv, tmp_path)
    for i in range(5):
        sink.submit(make_alert(i))
    assert await sink.flush(5.0) == 5
    # the crash: the cursor write never happened, so the next start offers all five again
    (tmp_path / "cursor").write_text("0")
    again = sink_for(redis_srv, tmp_path)
    assert again.pending == 5
    again.submit(make_alert(5))
    assert await again.flush(5.0) == 1
    assert await stream_ids(redis_srv.url) == [make_alert(i).id for i in range(6)]


async def test_wiped_outbox_starts_a_fresh_sequence(redis_srv: RedisServer, tmp_path: Path) -> None:
    a = sink_for(redis_srv, tmp_path / "a")
    a.submit(make_alert(0))
    a.submit(make_alert(1))
    await a.flush(5.0)
    b = sink_for(redis_srv, tmp_path / "b")  # a new outbox: its sequence 1 is not the old sequence 1
    b.submit(make_alert(2))
    assert await b.flush(5.0) == 1
    assert len(await stream_ids(redis_srv.url)) == 3


def test_torn_tail_is_cut_and_the_good_records_kept(tmp_path: Path) -> None:
    sink = AlertSink(lambda: None, KEYS, tmp_path, 100, Metrics())  # type: ignore[arg-type,return-value]
    for i in range(3):
        sink.submit(make_alert(i))
    asyncio.run(sink.close())
    seg = next(tmp_path.glob("seg-*.log"))
    with open(seg, "ab") as f:
        f.write(b'0badc0de {"seq":4,"t":1.0,"alert":{"id":"torn')
    box = Outbox(tmp_path)
    assert [r.seq for r in box.load()] == [1, 2, 3]
    box.close()
    assert seg.read_bytes().endswith(b"\n")


async def test_beyond_the_bound_the_oldest_are_given_up_and_counted(redis_srv: RedisServer,
                                                                    tmp_path: Path) -> None:
    redis_srv.stop()
    metrics = Metrics()
    sink = sink_for(redis_srv, tmp_path, metrics, max_pending=5)
    for i in range(8):
        sink.submit(make_alert(i))
    assert sink.pending == 5
    assert metrics.queue_dropped.labels("alert_outbox")._value.get() == 3
    redis_srv.start()
    await sink.flush(5.0)
    assert await stream_ids(redis_srv.url) == [make_alert(i).id for i in range(3, 8)]


async def test_reconnecting_stream_reader_misses_nothing(redis_srv: RedisServer, tmp_path: Path) -> None:
    """A reader that remembers the last stream id it saw and reads on from it after reconnecting gets
    every alert, including those delivered while it was away."""
    sink = sink_for(redis_srv, tmp_path)
    seen: list[str] = []

    async def read_from(last: str, until: int) -> str:
        r = aredis.Redis.from_url(redis_srv.url)
        try:
            while len(seen) < until:
                for _, entries in await r.xread({KEYS.alerts_stream: last}, block=1000) or []:
                    for eid, fields in entries:
                        seen.append(fields[b"id"].decode())
                        last = eid.decode()
            return last
        finally:
            await r.aclose()

    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(sink.run(), name="alert-sink")
        for i in range(5):
            sink.submit(make_alert(i))
        last = await read_from("0", 5)  # then the reader goes away
        for i in range(5, 12):
            sink.submit(make_alert(i))
        await wait_for(lambda: sink.pending == 0, what="delivery while the reader is away")
        await read_from(last, 12)
        run.cancel()
    await sink.close()
    assert seen == [make_alert(i).id for i in range(12)]


async def test_pubsub_subscribers_get_the_same_json(redis_srv: RedisServer, tmp_path: Path) -> None:
    r = aredis.Redis.from_url(redis_srv.url)
    ps = r.pubsub()
    await ps.subscribe(KEYS.alerts_channel)
    await ps.get_message(timeout=1.0)  # the subscribe confirmation
    sink = sink_for(redis_srv, tmp_path)
    sink.submit(make_alert(7))
    await sink.flush(5.0)
    msg = await ps.get_message(ignore_subscribe_messages=True, timeout=2.0)
    assert msg is not None and orjson.loads(msg["data"])["id"] == make_alert(7).id
    assert Alert.from_json(msg["data"]) == make_alert(7)
    await ps.aclose()
    await r.aclose()


async def test_password_url_works_and_never_reaches_the_log(redis_srv: RedisServer, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-pw-for-test"
    admin = aredis.Redis.from_url(redis_srv.url)
    await admin.config_set("requirepass", secret)
    await admin.aclose()
    url = f"redis://:{secret}@127.0.0.1:{redis_srv.port}/0"
    caplog.set_level(logging.DEBUG)
    bad = AlertSink(redis_factory(url.replace(secret, "wrong"), timeout_s=1.0), KEYS, tmp_path, 1000,
                    Metrics(), retry_min_s=0.01)
    bad.submit(make_alert(0))
    assert await bad.flush(0.2) == 0
    good = AlertSink(redis_factory(url, timeout_s=1.0), KEYS, tmp_path, 1000, Metrics())
    assert await good.flush(5.0) == 1
    assert secret not in caplog.text and "wrong" not in caplog.text


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS, with a password, and the CA file that verifies it."""
    openssl, exe = shutil.which("openssl"), shutil.which("redis-server")
    if openssl is None or exe is None:
        pytest.skip("openssl or redis-server is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    port = free_port()
    proc = subprocess.Popen([exe, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file",
                             str(cert), "--tls-auth-clients", "no", "--requirepass", "tls-pw", "--save", "",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "TLS redis-server did not start"
                time.sleep(0.02)  # a child process with no readiness signal
        yield port, cert
    finally:
        proc.terminate()
        proc.wait(10)


async def test_rediss_url_with_password(tls_redis: tuple[int, Path], tmp_path: Path) -> None:
    port, ca = tls_redis
    url = f"rediss://:tls-pw@127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    sink = AlertSink(redis_factory(url), KEYS, tmp_path / "outbox", 1000, Metrics())
    sink.submit(make_alert(0))
    assert await sink.flush(5.0) == 1
    assert await stream_ids(url) == [make_alert(0).id]


async def test_many_segments_are_replayed_in_order_and_deleted_once_delivered(redis_srv: RedisServer,
                                                                              tmp_path: Path) -> None:
    redis_srv.stop()
    first = sink_for(redis_srv, tmp_path, batch_size=500)
    for i in range(2500):
        first.submit(make_alert(i))
    await first.flush(0.1)
    assert len(segments(tmp_path)) == 3
    redis_srv.start()
    second = sink_for(redis_srv, tmp_path, batch_size=500)
    assert second.pending == 2500
    assert await second.flush(10.0) == 2500
    assert await stream_ids(redis_srv.url) == [make_alert(i).id for i in range(2500)]
    assert segments(tmp_path) == ["seg-2001.log"]  # the last one stays open
    third = sink_for(redis_srv, tmp_path)
    assert third.pending == 0 and not segments(tmp_path)
    await third.close()


async def test_the_newest_state_outlives_delivery_and_restarts(redis_srv: RedisServer, tmp_path: Path) -> None:
    """The state an alert was raised with stays on disk after Redis took the alert (Redis may restart
    empty and forget the state key), until a newer state replaces it; spent segments go as before."""
    sink = sink_for(redis_srv, tmp_path, batch_size=500)
    sink.submit(make_alert(0), b'{"saved_at":1}')
    for i in range(1, 2500):
        sink.submit(make_alert(i))
    assert sink.last_state == b'{"saved_at":1}'
    assert await sink.flush(10.0) == 2500
    assert segments(tmp_path) == ["seg-1.log", "seg-1001.log", "seg-2001.log"]  # the state's segment kept
    again = sink_for(redis_srv, tmp_path, batch_size=500)
    assert again.pending == 0 and again.last_state == b'{"saved_at":1}'
    again.submit(make_alert(2500), b'{"saved_at":2}')
    assert await again.flush(10.0) == 1
    assert segments(tmp_path) == ["seg-2501.log"]  # the older state's segments are spent now
    third = sink_for(redis_srv, tmp_path)
    assert third.last_state == b'{"saved_at":2}'
    assert third.pending == 0 and segments(tmp_path) == ["seg-2501.log"]
    await third.close()
    assert await stream_ids(redis_srv.url) == [make_alert(i).id for i in range(2501)]
