"""The wheel as a user installs it: one top-level `hedgewatch` namespace holding every module and bundled
file of service/, connectors/ and rules/, installed non-editable into a fresh virtual environment outside
the checkout, where `hedgewatch check` validates the bundled config and `hedgewatch demo` runs from another
directory, and where the bare folder names are not importable."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support import REPO, free_port, wait_for

SOURCES = ("service", "connectors", "rules")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Builds the wheel from a copy of the sources, so the build writes nothing into the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for top in SOURCES:
        shutil.copytree(REPO / top, src / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("hedgewatch-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed non-editable. Its dependencies come from this
    interpreter's site-packages through a path file, which adds the directory without running the path
    files inside it: the checkout's own editable install stays invisible."""
    where = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(where)
    py = where / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    deps = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    (site / "deps.pth").write_text("".join(f"{p}\n" for p in deps))
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                           "--disable-pip-version-check", "-q", str(wheel)], capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0 and "no such option: --python" in proc.stderr:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                               "-q", "--target", str(site), str(wheel)], capture_output=True, text=True,
                              timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return py


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEWATCH__") and k != "PYTHONPATH"}
    env.update(HOME=str(home), XDG_STATE_HOME=str(home / "state"))
    return env


def test_the_wheel_holds_only_the_hedgewatch_namespace_and_every_source_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"hedgewatch", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    shipped = {n for n in names if n.startswith("hedgewatch/")}
    for top in SOURCES:
        for f in (REPO / top).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix in {".py", ".yaml"}:
                rel = f"hedgewatch/{f.relative_to(REPO).as_posix()}"
                assert rel in shipped, f"{rel} is not in the wheel (pyproject.toml's package list?)"
    assert "hedgewatch/rules/SIGNALS.md" in shipped
    assert {f"hedgewatch/{top}/py.typed" for top in SOURCES} <= shipped


def test_the_installed_wheel_checks_the_bundled_config_and_hides_the_bare_names(
        venv_python: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bindir = venv_python.parent
    proc = subprocess.run([str(bindir / "hedgewatch"), "check"], cwd=elsewhere, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "live.yaml: ok" in proc.stdout, proc.stdout
    assert str(REPO) not in proc.stdout, "the installed command read the checkout"
    for bare in SOURCES:
        r = subprocess.run([str(venv_python), "-c", f"import {bare}"], cwd=elsewhere, env=_env(tmp_path),
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, f"`import {bare}` works: {r.stderr}"
    where = subprocess.run([str(venv_python), "-c", "import hedgewatch.service as s; print(s.__file__)"],
                           cwd=elsewhere, env=_env(tmp_path), capture_output=True, text=True, timeout=60, check=True)
    assert where.stdout.startswith(str(venv_python.parents[1])), where.stdout


async def test_the_installed_wheel_runs_the_demo_from_another_directory(venv_python: Path, tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path) | {"HEDGEWATCH__HTTP__PORT": str(port)}
    err = tmp_path / "stderr"
    with (tmp_path / "stdout").open("wb") as o, err.open("wb") as e:
        proc = await asyncio.create_subprocess_exec(str(venv_python.parent / "hedgewatch"), "demo", cwd=tmp_path,
                                                    env=env, stdout=o, stderr=e)
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            async def priced() -> bool:
                if proc.returncode is not None:
                    raise AssertionError(f"demo exited {proc.returncode}: {err.read_text()[-2000:]}")
                try:
                    state = (await http.get(f"http://127.0.0.1:{port}/state")).json()
                except (httpx.TransportError, ValueError):
                    return False
                return ((state.get("market") or {}).get("index") or {}).get("level") is not None

            await wait_for(priced, 60, "the installed demo to price its index")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), 20)
    assert rc == 0, err.read_text()[-2000:]
