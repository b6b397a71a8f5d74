"""The lineage API's defaults are the safe ones, and its thread pool is bounded (no database needed)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from headwater.controller.api_server import auth_of
from headwater.controller.config import Settings
from headwater.lineage.api import ApiAuth, TooBusyError, Workers

pytestmark = pytest.mark.unit


def test_by_default_the_api_needs_tokens_and_listens_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEADWATER_API_AUTH_ENABLED", "HEADWATER_API_HOST", "HEADWATER_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.api_auth_enabled is True
    assert settings.api_host == "127.0.0.1"
    assert auth_of(settings) == ApiAuth(None, None, enabled=True)


def test_tokens_and_the_explicit_switch_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_API_TOKEN", "r")
    monkeypatch.setenv("HEADWATER_API_WRITE_TOKEN", "w")
    assert auth_of(Settings()) == ApiAuth("r", "w", enabled=True)
    monkeypatch.setenv("HEADWATER_API_AUTH_ENABLED", "false")
    assert auth_of(Settings()).enabled is False


def test_an_api_without_authentication_or_without_a_token_is_logged_as_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="headwater.controller.api_server"):
        auth_of(Settings(api_auth_enabled=False))
    assert "WITHOUT authentication" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="headwater.controller.api_server"):
        auth_of(Settings(api_token="r", api_write_token=None))
    assert "no write token is set (HEADWATER_API_WRITE_TOKEN)" in caplog.text
    assert "no read token" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="headwater.controller.api_server"):
        auth_of(Settings(api_token="r", api_write_token="w"))
    assert not caplog.records


def test_beyond_its_threads_and_queue_the_api_refuses_work_until_a_thread_is_free() -> None:
    workers = Workers(threads=1, max_waiting=1)
    gate = threading.Event()

    async def main() -> list[object]:
        first = asyncio.ensure_future(workers.run(gate.wait))
        second = asyncio.ensure_future(workers.run(lambda: "queued"))
        await asyncio.sleep(0)
        with pytest.raises(TooBusyError, match="at most 1 lineage queries run and 1 wait at once"):
            await workers.run(lambda: "refused")
        gate.set()
        done = await asyncio.gather(first, second)
        return [*done, await workers.run(lambda: "after")]

    try:
        assert asyncio.run(main()) == [True, "queued", "after"]
    finally:
        gate.set()
        workers.close()
