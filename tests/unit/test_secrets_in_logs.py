"""Passwords never reach a log line: URLs and connection strings are redacted, a bad database URL is not repeated."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any

import pytest

from headwater.controller.api_server import serve_when_ready
from headwater.controller.config import Settings
from headwater.lineage.migrations import migrate
from headwater.lineage.recorder import Recorder
from headwater.lineage.store import LineageStore
from headwater.spec.redaction import MASK, redact
from helpers import wait_for

pytestmark = pytest.mark.unit

PASSWORD = "s3cr3t-Pa55"
# libpq cannot parse these; its own messages quote them, or their password, back.
MALFORMED_URLS = [
    f"postgres//headwater:{PASSWORD}@db:5432/headwater",  # the scheme's ':' missing
    f"headwater:{PASSWORD}@db:5432/headwater",  # no scheme at all
    f"postgresql://headwater:{PASSWORD}%ZZ@db:5432/headwater",  # a bad percent-escape in the password
]


@pytest.mark.parametrize("text", [
    f"postgresql://headwater:{PASSWORD}@db:5432/headwater",
    f'missing "=" after "postgres//headwater:{PASSWORD}@db/x" in connection info string',
    f"headwater:{PASSWORD}@db:5432/headwater",
    f"postgresql://headwater:p@{PASSWORD}@db/x?sslmode=require",  # an '@' left unescaped in the password
    f"host=db user=headwater password={PASSWORD} dbname=headwater",
    f"host=db password='{PASSWORD} with spaces' dbname=headwater",
    f"https://marquez.example/api/v1/lineage?api_key={PASSWORD}&x=1",
    f"https://hooks.example/post?token={PASSWORD}",
])
def test_redaction_masks_passwords_and_tokens_in_urls_and_connection_strings(text: str) -> None:
    out = redact(text)
    assert PASSWORD not in out
    assert MASK in out


def test_redaction_keeps_everything_else() -> None:
    assert redact("postgresql://headwater:pw@db:5432/headwater") == "postgresql://headwater:***@db:5432/headwater"
    for text in ["postgresql://db:5432/headwater", "http://user@host/x", "mail data-team@company.com",
                 "failed at 12:00: connection refused", "step load failed: relation raw.orders does not exist"]:
        assert redact(text) == text


@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_opening_the_store_with_a_malformed_url_raises_without_repeating_it(url: str) -> None:
    for attempt in (partial(LineageStore.open, url), partial(migrate, url)):
        with pytest.raises(ValueError, match="not a valid libpq connection string") as info:
            attempt()
        assert PASSWORD not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__


class _NoRuns:
    def iter_runs(self, scope: str | None) -> list[dict[str, Any]]:
        return []


@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_the_recorder_retrying_a_malformed_database_url_never_logs_its_password(
        url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="headwater")
    recorder = Recorder(partial(LineageStore.open, url), _NoRuns(), [None], rescan_seconds=1)
    recorder.start()
    try:
        wait_for(lambda: "lineage recording paused" in caplog.text, timeout=10, message="the recorder's warning")
    finally:
        recorder.stop()
    assert "not a valid libpq connection string" in caplog.text
    assert PASSWORD not in caplog.text


def test_a_password_in_any_error_the_recorder_meets_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise OSError(f"could not reach postgresql://headwater:{PASSWORD}@db:5432/headwater")

    caplog.set_level(logging.WARNING, logger="headwater")
    recorder = Recorder(fail, _NoRuns(), [None], rescan_seconds=1)
    recorder.start()
    try:
        wait_for(lambda: "lineage recording paused" in caplog.text, timeout=10, message="the recorder's warning")
    finally:
        recorder.stop()
    assert "postgresql://headwater:***@db:5432/headwater" in caplog.text
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("url", MALFORMED_URLS[:1])
def test_the_lineage_api_waiting_for_a_malformed_database_url_never_logs_its_password(
        url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="headwater")
    settings = Settings(database_url=url, api_host="127.0.0.1", api_port=0)

    async def first_warning() -> None:
        task = asyncio.create_task(serve_when_ready(settings))
        try:
            async with asyncio.timeout(10):
                while "lineage API waits for the database" not in caplog.text:
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(first_warning())
    assert "not a valid libpq connection string" in caplog.text
    assert PASSWORD not in caplog.text
