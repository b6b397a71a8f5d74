"""The runner of ``sql`` steps: ``headwater step sql`` (or ``python -m headwater.steps.sql``) in a step Job.

It reads its whole configuration from the environment the operator gives the step's container:

``HEADWATER_SQL``
    The SQL script; one statement or several separated by ``;``.
``HEADWATER_SQL_FILE``
    A path to read the script from instead (a script mounted from a ConfigMap); wins over ``HEADWATER_SQL``.
``HEADWATER_DATABASE_URL``
    A libpq connection string (``postgresql://...`` or ``key=value``), from the step's Secret. Without it
    the runner connects with libpq's own ``PG*`` variables, as long as one of them names the server.
``HEADWATER_STEP_PARAMS``
    Optional JSON object of named parameters, used in the script as ``%(name)s`` placeholders (the run
    date, for example). Values are quoted by psycopg, never pasted in as text. With parameters set, a
    literal ``%`` in the script must be written ``%%``; without them the script is sent as it is.
``HEADWATER_TERMINATION_LOG``
    Where the result goes; the container's ``terminationMessagePath`` (``/dev/termination-log``).
``HEADWATER_CHECKS``
    Optional JSON list the operator writes from the outputs' checks: for each output table what to
    measure after the commit (``{"output": "raw.orders", "columns": true, "freshnessColumn": "updated_at",
    "assertions": {"no-negative": "SELECT ..."}}``).  The result then carries ``outputs.<table>`` with
    ``columns``/``schemaFingerprint``, ``newestRecordAt`` and ``checks`` (rows each assertion returned);
    a measurement that errors is left out (the check then fails) and named in ``checkErrors``.

The whole script runs in one transaction, committed at the end: either every statement takes effect or
none does (so the script must not contain ``BEGIN``/``COMMIT`` of its own). The result, a small JSON
object the operator copies into the PipelineRun's status, is written to the termination log:
``{"rowsAffected": 1234, "statements": 2, "durationSeconds": 0.42}`` on success, or
``{"error": "relation \\"x\\" does not exist", "sqlstate": "42P01"}`` on failure.

Exit codes: 0 success, 1 the database refused the script (or could not be reached), 2 bad configuration,
143 terminated by SIGTERM (the Job's deadline passed, or the run was cancelled): the running statement is
cancelled in the server and nothing is committed. In a container the runner is PID 1, which the kernel
shields from signals it has no handler for; without its own it would run on until SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from headwater.runs.checks import schema_fingerprint

__all__ = [
    "ENV_CHECKS",
    "ENV_DATABASE_URL",
    "ENV_SQL",
    "ENV_SQL_FILE",
    "ENV_STEP_PARAMS",
    "ENV_TERMINATION_LOG",
    "EXIT_CONFIG_ERROR",
    "EXIT_SQL_ERROR",
    "EXIT_TERMINATED",
    "ConfigError",
    "StepConfig",
    "StepResult",
    "Terminated",
    "error_message",
    "load_config",
    "main",
    "measure_outputs",
    "run_sql",
    "termination_message",
]

ENV_SQL = "HEADWATER_SQL"
ENV_SQL_FILE = "HEADWATER_SQL_FILE"
ENV_DATABASE_URL = "HEADWATER_DATABASE_URL"
ENV_STEP_PARAMS = "HEADWATER_STEP_PARAMS"
ENV_TERMINATION_LOG = "HEADWATER_TERMINATION_LOG"
ENV_CHECKS = "HEADWATER_CHECKS"

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
EXIT_SQL_ERROR = 1
EXIT_CONFIG_ERROR = 2
EXIT_TERMINATED = 128 + signal.SIGTERM

MAX_MESSAGE_BYTES = 4096
"""Kubernetes keeps at most this much of a termination message."""
MAX_ERROR_CHARS = 1000
"""Error texts in the result are cut to this length; the full error is in the container's log."""

_PG_SERVER_VARS = ("PGHOST", "PGHOSTADDR", "PGSERVICE", "PGDATABASE")
_PLACEHOLDER_HINT = f" (with {ENV_STEP_PARAMS} set, write a literal % in the SQL as %%)"


class ConfigError(Exception):
    """The step's environment is incomplete or invalid; the message names the variable to fix."""


@dataclass(frozen=True)
class StepConfig:
    """What one run of the sql step needs, read from the environment by :func:`load_config`."""

    sql: str
    database_url: str
    """A libpq connection string; empty means "from the ``PG*`` variables"."""
    params: dict[str, Any] | None = None
    termination_log: Path = Path(DEFAULT_TERMINATION_LOG)
    checks: tuple[dict[str, Any], ...] = ()
    """What to measure on each output table after the commit (``HEADWATER_CHECKS``)."""


@dataclass(frozen=True)
class StepResult:
    """What a committed script did."""

    rows_affected: int
    statements: int
    duration_seconds: float

    def as_message(self) -> dict[str, Any]:
        return {
            "rowsAffected": self.rows_affected,
            "statements": self.statements,
            "durationSeconds": round(self.duration_seconds, 3),
        }


def _read_sql(env: Mapping[str, str]) -> str:
    path = env.get(ENV_SQL_FILE)
    if path:
        try:
            sql = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{ENV_SQL_FILE}={path} cannot be read: {exc}") from exc
        source = f"the file {path} ({ENV_SQL_FILE})"
    else:
        if ENV_SQL not in env:
            raise ConfigError(f"{ENV_SQL} is not set: give the step its SQL (steps[].sql) or {ENV_SQL_FILE}")
        sql, source = env[ENV_SQL], ENV_SQL
    if not sql.strip():
        raise ConfigError(f"{source} is empty: there is no SQL to run")
    return sql


def _database_url(env: Mapping[str, str]) -> str:
    url = env.get(ENV_DATABASE_URL, "")
    if not url.strip():
        if any(env.get(name) for name in _PG_SERVER_VARS):
            return ""  # libpq reads PGHOST, PGUSER, PGPASSWORD... itself
        state = "is empty" if ENV_DATABASE_URL in env else "is not set"
        raise ConfigError(
            f"{ENV_DATABASE_URL} {state}: give the step a connectionSecretRef to a Secret key holding a "
            "libpq connection string (postgresql://user:password@host:5432/db), "
            f"or set one of {', '.join(_PG_SERVER_VARS)}"
        )
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's message may quote the string, password included: never repeat it.
        raise ConfigError(
            f"{ENV_DATABASE_URL} is not a valid libpq connection string (the value is not shown, it may hold "
            "a password); expected postgresql://user:password@host:5432/db or host=... dbname=..."
        ) from None
    return url


def _params(env: Mapping[str, str]) -> dict[str, Any] | None:
    text = env.get(ENV_STEP_PARAMS, "")
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{ENV_STEP_PARAMS} is not valid JSON ({exc}); expected an object such as "
                          '{"run_date": "2026-11-23"}') from exc
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise ConfigError(f"{ENV_STEP_PARAMS} must be a JSON object of named parameters, not a {kind}")
    # Nested objects go to PostgreSQL as jsonb; everything else is adapted by psycopg as usual.
    return {name: Jsonb(v) if isinstance(v, dict) else v for name, v in value.items()}


def _checks(env: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
    text = env.get(ENV_CHECKS, "")
    if not text.strip():
        return ()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{ENV_CHECKS} is not valid JSON ({exc})") from exc
    if not isinstance(value, list) or not all(isinstance(v, dict) and isinstance(v.get("output"), str)
                                              for v in value):
        raise ConfigError(f"{ENV_CHECKS} must be a JSON list of objects naming an output table")
    return tuple(value)


def load_config(env: Mapping[str, str]) -> StepConfig:
    """The step's configuration from ``env`` (``os.environ``); :class:`ConfigError` names what is wrong."""
    return StepConfig(
        sql=_read_sql(env),
        database_url=_database_url(env),
        params=_params(env),
        termination_log=Path(env.get(ENV_TERMINATION_LOG) or DEFAULT_TERMINATION_LOG),
        checks=_checks(env),
    )


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_message(exc: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """The first line of an error (PostgreSQL's primary message when there is one), cut to ``limit``."""
    primary = exc.diag.message_primary if isinstance(exc, psycopg.Error) else None
    text = primary or str(exc) or type(exc).__name__
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return _truncate(first_line.strip(), limit)


def termination_message(payload: Mapping[str, Any], limit: int = MAX_MESSAGE_BYTES) -> str:
    """``payload`` as compact JSON of at most ``limit`` bytes; a too long ``error`` is cut to fit."""
    data = dict(payload)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    while len(text.encode("utf-8")) > limit and isinstance(data.get("error"), str) and len(data["error"]) > 1:
        data["error"] = _truncate(data["error"], len(data["error"]) // 2)
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > limit:
        raise ValueError(f"termination message of {len(text)} characters does not fit in {limit} bytes")
    return text


def _execute(cur: psycopg.Cursor[Any], sql: str, params: dict[str, Any] | None) -> list[int]:
    """Run the script and return the row count of each of its statements (-1 where there is none)."""
    if params is None:
        cur.execute(sql)  # no parameters: sent as it is, placeholders are not interpreted
    else:
        cur.execute(sql, params)
    counts = [cur.rowcount]
    while cur.nextset():
        counts.append(cur.rowcount)
    return counts


def run_sql(config: StepConfig) -> StepResult:
    """Run ``config.sql`` in one transaction and commit it; any error rolls everything back and is raised.

    Without parameters the script goes to the server as one simple query. With parameters a
    client-side-binding cursor quotes each value as a literal, which keeps multi-statement scripts
    working (server-side binding accepts one statement only).
    """
    with psycopg.connect(config.database_url) as conn:
        cur: psycopg.Cursor[Any] = conn.cursor() if config.params is None else psycopg.ClientCursor(conn)
        try:
            start = time.monotonic()
            counts = _execute(cur, config.sql, config.params)
            conn.commit()
            duration = time.monotonic() - start
        except BaseException:
            with contextlib.suppress(psycopg.Error):  # a broken connection has nothing to roll back
                conn.rollback()
            raise
        finally:
            cur.close()
    affected = sum(n for n in counts if n >= 0)
    return StepResult(rows_affected=affected, statements=len(counts), duration_seconds=duration)


def _table(name: str) -> pgsql.Composable:
    schema, _, table = name.rpartition(".")
    return pgsql.Identifier(schema, table) if schema else pgsql.Identifier(table)


def _columns(conn: psycopg.Connection[Any], name: str) -> list[str]:
    schema, _, table = name.rpartition(".")
    rows = conn.execute(
        "SELECT column_name || ' ' || data_type FROM information_schema.columns "
        "WHERE table_schema = coalesce(%s, current_schema()) AND table_name = %s ORDER BY ordinal_position",
        (schema or None, table)).fetchall()
    return [str(r[0]) for r in rows]


def measure_outputs(config: StepConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """After the commit: each output's columns, newest record and assertion results, and what failed to be
    measured (by check or measurement name).  Read-only; every measurement in a transaction of its own."""
    outputs: dict[str, Any] = {}
    errors: dict[str, str] = {}
    with psycopg.connect(config.database_url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")
        for item in config.checks:
            name = item["output"]
            block: dict[str, Any] = {}
            measures: list[tuple[str, Any]] = []
            if item.get("columns"):
                measures.append(("columns", lambda n=name: _columns(conn, n)))
            if isinstance(item.get("freshnessColumn"), str):
                column = item["freshnessColumn"]
                measures.append(("newestRecordAt", lambda n=name, c=column: conn.execute(
                    pgsql.SQL("SELECT max({}) FROM {}").format(pgsql.Identifier(c), _table(n))).fetchone()))
            for check, query in (item.get("assertions") or {}).items():
                measures.append((f"checks.{check}", lambda q=query: conn.execute(
                    pgsql.SQL("SELECT count(*) FROM ({}) AS assertion").format(pgsql.SQL(q))).fetchone()))
            for key, measure in measures:
                try:
                    value = measure()
                except psycopg.Error as exc:
                    errors[f"{name}: {key}"] = error_message(exc, 200)
                    continue
                if key == "columns":
                    block["columns"] = value
                elif key == "newestRecordAt":
                    newest = value[0] if value else None
                    if newest is not None:
                        block["newestRecordAt"] = newest.isoformat()
                else:
                    block.setdefault("checks", {})[key.split(".", 1)[1]] = int(value[0]) if value else 0
            outputs[name] = block
    return outputs, errors


def _with_outputs(message: dict[str, Any], outputs: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """The result with the measurements, column lists replaced by their fingerprint when they do not fit."""
    full = {**message, "outputs": outputs, **({"checkErrors": errors} if errors else {})}
    try:
        termination_message(full)
        return full
    except ValueError:
        pass
    slim = {name: {k: v for k, v in block.items() if k != "columns"} |
            ({"schemaFingerprint": schema_fingerprint(block["columns"])} if "columns" in block else {})
            for name, block in outputs.items()}
    return {**message, "outputs": slim, **({"checkErrors": dict(list(errors.items())[:5])} if errors else {})}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _write_result(path: Path, payload: Mapping[str, Any]) -> None:
    try:
        path.write_text(termination_message(payload), encoding="utf-8")
    except OSError as exc:
        _log(f"Could not write the step result to {path}: {exc}")


def _sql_failure(exc: psycopg.Error, config: StepConfig) -> dict[str, Any]:
    message = error_message(exc)
    if config.params is not None and exc.sqlstate is None and "placeholder" in message:
        message = _truncate(message + _PLACEHOLDER_HINT, MAX_ERROR_CHARS)
    payload: dict[str, Any] = {"error": message}
    if exc.sqlstate:
        payload["sqlstate"] = exc.sqlstate
    return payload


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="headwater step sql",
        description="Run the SQL of a Headwater sql step in one transaction and report the rows it affected.",
        epilog=f"Configured by {ENV_SQL} or {ENV_SQL_FILE}, {ENV_DATABASE_URL}, {ENV_STEP_PARAMS} (optional) "
               f"and {ENV_TERMINATION_LOG} (default {DEFAULT_TERMINATION_LOG}).",
    )


class Terminated(SystemExit):
    """SIGTERM arrived. A SystemExit, so that psycopg cancels the running statement in the server."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(EXIT_TERMINATED)


def main(argv: list[str] | None = None) -> int:
    """Run the sql step configured by the environment; return the process exit code."""
    try:
        _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or an unknown argument
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG_ERROR
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        _log(f"Configuration error: {exc}")
        log = Path(os.environ.get(ENV_TERMINATION_LOG) or DEFAULT_TERMINATION_LOG)
        _write_result(log, {"error": _truncate(str(exc), MAX_ERROR_CHARS)})
        return EXIT_CONFIG_ERROR
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run_sql(config)
    except Terminated:
        _log("SQL step terminated (SIGTERM): the running statement was cancelled, nothing was committed")
        _write_result(config.termination_log, {"error": "terminated by SIGTERM before the script finished; "
                                                        "nothing was committed"})
        return EXIT_TERMINATED
    except psycopg.Error as exc:
        payload = _sql_failure(exc, config)
        state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
        _log(f"SQL step failed, nothing was committed{state}: {str(exc).strip() or type(exc).__name__}")
        _write_result(config.termination_log, payload)
        return EXIT_SQL_ERROR
    _log(f"SQL step committed: {result.statements} statement(s), {result.rows_affected} row(s) affected "
         f"in {result.duration_seconds:.3f}s")
    message = result.as_message()
    if config.checks:
        try:
            outputs, errors = measure_outputs(config)
        except psycopg.Error as exc:  # committed all the same: the checks that need these values fail
            outputs, errors = {}, {"connection": error_message(exc, 200)}
        for what, why in errors.items():
            _log(f"Could not measure {what}: {why}")
        message = _with_outputs(message, outputs, errors)
    _write_result(config.termination_log, message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
