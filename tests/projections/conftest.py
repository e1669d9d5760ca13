"""A real PostgreSQL for the projection tests (deploy/local-postgres), and per-test databases.

`postgres_url` starts a throwaway cluster once per session (installing Debian's package
when it is missing and we are root) and stops it at the end; when it cannot start
(no apt, no network, not root), tests that need it are skipped with the reason.
`database_url` is parametrized: each test using it runs on in-memory SQLite and on a
fresh PostgreSQL database.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from deploy.localrun import DEPLOY
from projections.store import engine_url

LOCAL_POSTGRES = DEPLOY / "local-postgres"
#: apt-get install on a cold machine takes a while; a warm start takes ~2 s.
START_TIMEOUT_S = 240


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> Iterator[str]:
    """URL of a running PostgreSQL (the `postgres` maintenance database); skip when none can start."""
    given = os.environ.get("TOKENPLAN_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    state = Path(tmp_path_factory.mktemp("local-postgres")) / "state.json"
    env = dict(os.environ, TOKENPLAN_PG_STATE=str(state))
    try:
        started = subprocess.run([str(LOCAL_POSTGRES), "start"], env=env, capture_output=True, text=True,
                                 timeout=START_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"PostgreSQL could not be started by deploy/local-postgres: {error}")
    if started.returncode != 0:
        pytest.skip(f"PostgreSQL could not be started by deploy/local-postgres: {started.stderr.strip()[-400:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(LOCAL_POSTGRES), "stop"], env=env, capture_output=True, check=False)


def fresh_database(server_url: str) -> str:
    """CREATE DATABASE with a unique name on the server; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(engine_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    """In-memory SQLite, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return "sqlite://"
    return fresh_database(request.getfixturevalue("postgres_url"))
