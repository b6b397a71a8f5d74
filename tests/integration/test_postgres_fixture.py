"""The throwaway PostgreSQL server used by the tests and the demo."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import psycopg
import pytest

from helpers import throwaway_postgres

pytestmark = pytest.mark.integration


def test_the_session_database_answers_a_query(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT 40 + 2").fetchone() == (42,)


def test_a_throwaway_server_is_stopped_and_its_directory_removed_afterwards() -> None:
    with throwaway_postgres() as server:
        with psycopg.connect(server.url) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1), (2)")
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
        directory = server.directory
        port = urlparse(server.url).port
        assert (directory / "data" / "PG_VERSION").exists()
    assert not directory.exists()
    assert port is not None
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_stopped_server_comes_back_on_the_same_url_with_its_data() -> None:
    with throwaway_postgres() as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        url = server.url
        server.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
        assert server.start() == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (7,)
