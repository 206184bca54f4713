"""Real PostgreSQL and Redis for the tests: the servers named by RHETOR_TEST_DATABASE_URL / RHETOR_TEST_REDIS_URL
(CI: .ci/run exports them when 127.0.0.1:5432 and :6379 answer), else throwaway ones started here from the
binaries on PATH (`initdb` + `pg_ctl` in a temp dir; `redis-server` on a free port), else a skip that says why.

Every test gets its own PostgreSQL schema (`?schema=rhetor_t_<random>`, dropped afterwards) and its own Redis key
prefix (its keys deleted afterwards), so runs and tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _throwaway_postgres(tmp: Path) -> tuple[str, subprocess.Popen[bytes] | None, Path] | str:
    """(url, None, datadir) of a fresh cluster, or the reason there is none."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        return "no RHETOR_TEST_DATABASE_URL and no initdb/pg_ctl on PATH"
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user when there is one
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no RHETOR_TEST_DATABASE_URL, and initdb cannot run as root without a postgres user"
        prefix = ["runuser", "-u", "postgres", "--"]
        os.chmod(tmp, 0o777)
    data, port = tmp / "pg", _free_port()
    run = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], **run)  # type: ignore[call-overload]
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-w", "-o", f"-p {port} -k {tmp} -h 127.0.0.1",
                    "-l", str(tmp / "pg.log"), "start"], **run)  # type: ignore[call-overload]
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", None, data


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL URL (without a schema)."""
    url = os.environ.get("RHETOR_TEST_DATABASE_URL")
    if url:
        yield url
        return
    tmp = Path(tempfile.mkdtemp(prefix="rhetor-pg-"))
    found = _throwaway_postgres(tmp)
    if isinstance(found, str):
        pytest.skip(found)
    url, _, data = found
    try:
        yield url
    finally:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    url = os.environ.get("RHETOR_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no RHETOR_TEST_REDIS_URL and no redis-server on PATH")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _answers(port):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.skip("redis-server did not start")
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _drop_schema(server: str, schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(server, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """RHETOR_DATABASE_URL for one test: its own schema, dropped when the test ends."""
    pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install -e '.[scale]')")
    schema = "rhetor_t_" + secrets.token_hex(6)
    sep = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{sep}schema={schema}"
    _drop_schema(postgres_server, schema)


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[tuple[str, str]]:
    """(RHETOR_REDIS_URL, key prefix) for one test; every key under the prefix is deleted when it ends."""
    redis = pytest.importorskip("redis", reason="redis is not installed (pip install -e '.[scale]')")
    prefix = "rhetor-t-" + secrets.token_hex(6) + ":"
    yield redis_server, prefix
    client = redis.Redis.from_url(redis_server)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
