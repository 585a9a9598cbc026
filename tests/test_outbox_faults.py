"""The alert outbox on a disk that fails: a full tmpfs, a directory that is not one. The daemon's sink must
keep running, deliver from memory, never tear a record, say so once and recover by itself."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hedgewatch.service.errors import StorageError
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.outbox import Outbox, Record, _encode
from tests.support import RedisServer, wait_for
from tests.test_outbox import make_alert, segments, sink_for, stream_ids

SMALL_DISK = "256k"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of its own: filling it cannot touch anything else."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk, leaving about ``leave`` bytes free; returns the filler to delete later."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def assert_not_torn(outbox_dir: Path) -> None:
    """Every segment is whole records: nothing for the next start to cut."""
    for name in segments(outbox_dir):
        data = (outbox_dir / name).read_bytes()
        assert not data or data.endswith(b"\n"), f"{name} ends in a torn record"


async def test_full_disk_keeps_running_and_delivers_from_memory(
        redis_srv: RedisServer, small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = small_disk / "outbox"
    metrics = Metrics()
    sink = sink_for(redis_srv, out, metrics, disk_retry_s=(0.05, 0.2))
    filler = fill(small_disk)
    alerts = [make_alert(i) for i in range(10)]
    with caplog.at_level(logging.INFO, logger="hedgewatch.service.outbox"):
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(sink.run(), name="alert-sink")
            for a in alerts:
                sink.submit(a)
            await wait_for(lambda: sink.delivered == 10, what="delivery from memory")
            assert not sink.durable
            assert metrics.outbox_writable._value.get() == 0
            assert metrics.outbox_write_errors._value.get() >= 1
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and "cannot write" in errors[0].getMessage()
            assert "No space left on device" in errors[0].getMessage()
            # more alerts while the disk is still full: delivered too, no new error line
            sink.submit(make_alert(10))
            await wait_for(lambda: sink.delivered == 11, what="the eleventh alert")
            filler.unlink()
            await wait_for(lambda: sink.durable, what="the disk probed writable again")
            assert metrics.outbox_writable._value.get() == 1
            sink.submit(make_alert(11))
            await wait_for(lambda: sink.delivered == 12, what="durable delivery again")
            task.cancel()
    await sink.close()
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    assert any("takes writes again" in r.getMessage() for r in caplog.records)
    assert await stream_ids(redis_srv.url) == [make_alert(i).id for i in range(12)]
    assert_not_torn(out)
    # the next start offers nothing again: the cursor caught up once the disk took writes
    again = sink_for(redis_srv, out)
    assert again.pending == 0
    await again.close()


async def test_disk_filling_mid_append_never_tears_a_record(redis_srv: RedisServer, small_disk: Path) -> None:
    """Redis down, the disk fills part way through a group commit: the failed write is cut back, so what
    is on disk is whole records, the rest waits in memory, and once Redis is back every alert arrives
    exactly once, in order."""
    out = small_disk / "outbox"
    redis_srv.stop()
    metrics = Metrics()
    sink = sink_for(redis_srv, out, metrics, disk_retry_s=(0.05, 0.2))
    alerts = [make_alert(i) for i in range(40)]
    record = len(_encode(Record(1, 1.7e9, alerts[0].id, alerts[0].to_json())))
    fill(small_disk, leave=int(15.5 * record))  # room for the first 10, not for the next 30
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sink.run(), name="alert-sink")
        for a in alerts[:10]:
            sink.submit(a)
        await wait_for(lambda: sink._outbox.written == 10, what="the first ten on disk")
        for a in alerts[10:]:
            sink.submit(a)
        await wait_for(lambda: metrics.outbox_write_errors._value.get() >= 1, what="a failed append")
        assert_not_torn(out)
        assert [r.alert_id for r in Outbox(out).load()] == [a.id for a in alerts[:10]]
        assert sink.pending == 40
        redis_srv.start()
        await wait_for(lambda: sink.pending == 0, what="delivery from disk, then from memory")
        task.cancel()
    await sink.close()
    assert await stream_ids(redis_srv.url) == [a.id for a in alerts]
    assert_not_torn(out)


async def test_a_redis_outage_is_logged_once_and_its_end_once(
        redis_srv: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    redis_srv.stop()
    metrics = Metrics()
    sink = sink_for(redis_srv, tmp_path, metrics)
    with caplog.at_level(logging.INFO, logger="hedgewatch.service.outbox"):
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(sink.run(), name="alert-sink")
            sink.submit(make_alert(0))
            await wait_for(lambda: metrics.redis_errors._value.get() >= 5, what="several failed attempts")
            redis_srv.start()
            await wait_for(lambda: sink.pending == 0, what="delivery")
            task.cancel()
    await sink.close()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("Redis unavailable" in m for m in lines) == 1
    assert sum("Redis reachable again" in m for m in lines) == 1


def test_an_outbox_dir_under_a_regular_file_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StorageError) as err:
        Outbox(blocker / "outbox")
    assert "redis.outbox_dir" in str(err.value) and "Not a directory" in str(err.value)
    assert "\n" not in str(err.value)


def test_run_with_an_unusable_outbox_dir_exits_with_one_line(tmp_path: Path, redis_srv: RedisServer) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cfg = tmp_path / "hw.yaml"
    cfg.write_text(
        "sources: [{exchange: binanceusdm, symbols: [BTC], ws_url: 'ws://127.0.0.1:9/',"
        " rest_url: 'http://127.0.0.1:9'}]\n"
        "index: {name: HW, constituents: [BTC], market_caps: {BTC: 1.0e12}}\n"
        f"redis: {{url: '{redis_srv.url}', outbox_dir: '{blocker / 'outbox'}'}}\n"
        "http: {port: 0}\n"
    )
    done = subprocess.run([sys.executable, "-m", "hedgewatch.service", "run", "-c", str(cfg)], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    err = [line for line in done.stderr.splitlines() if "outbox_dir" in line]
    assert len(err) == 1 and "not a directory" in err[0].lower(), done.stderr
