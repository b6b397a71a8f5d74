"""The sql step runner against a real PostgreSQL server: results, atomicity, errors and bound parameters."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from headwater.runs import checks
from headwater.runs.jobs import JobSettings, RunRef, build_job
from headwater.spec.models import CheckOutcome, StepSpec
from headwater.steps import sql as step
from helpers import ROOT, wait_for

pytestmark = pytest.mark.integration

_CLEARED_PREFIXES = ("HEADWATER_", "PG")


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A fresh schema for one test, dropped with everything in it afterwards."""
    name = f"sqlstep_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def termination_log(tmp_path: Path) -> Path:
    return tmp_path / "termination-log"


@pytest.fixture
def step_env(monkeypatch: pytest.MonkeyPatch, database_url: str, termination_log: Path) -> pytest.MonkeyPatch:
    """The environment of a step Pod: no stray HEADWATER_*/PG* variables, the database and the result file."""
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv(step.ENV_DATABASE_URL, database_url)
    monkeypatch.setenv(step.ENV_TERMINATION_LOG, str(termination_log))
    return monkeypatch


def _run(env: pytest.MonkeyPatch, sql: str, params: dict[str, Any] | None = None) -> int:
    env.setenv(step.ENV_SQL, sql)
    if params is not None:
        env.setenv(step.ENV_STEP_PARAMS, json.dumps(params))
    return step.main([])


def _result(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    assert len(raw) < 4096, "Kubernetes keeps only 4096 bytes of a termination message"
    value: dict[str, Any] = json.loads(raw)
    return value


def _query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows as another session sees them: only committed work is visible."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql).fetchall()


def _source_table(database_url: str, schema: str, rows: int) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(f"CREATE TABLE {schema}.orders (id int PRIMARY KEY, amount numeric NOT NULL)")
        conn.execute(f"INSERT INTO {schema}.orders SELECT i, i * 10 FROM generate_series(1, {rows}) AS i")
        conn.execute(f"CREATE TABLE {schema}.big_orders (id int PRIMARY KEY, amount numeric NOT NULL)")


def test_insert_select_reports_its_rows_affected_in_the_termination_log(
    step_env: pytest.MonkeyPatch, database_url: str, schema: str, termination_log: Path
) -> None:
    _source_table(database_url, schema, rows=25)

    code = _run(step_env, f"INSERT INTO {schema}.big_orders SELECT * FROM {schema}.orders WHERE amount > 50")

    assert code == 0
    result = _result(termination_log)
    assert result["rowsAffected"] == 20
    assert result["statements"] == 1
    assert isinstance(result["durationSeconds"], float) and result["durationSeconds"] >= 0
    assert _query(database_url, f"SELECT count(*) FROM {schema}.big_orders") == [(20,)]


def test_a_multi_statement_script_commits_every_statement_and_sums_their_rows(
    step_env: pytest.MonkeyPatch, database_url: str, schema: str, termination_log: Path
) -> None:
    script = f"""
        CREATE TABLE {schema}.daily (day int PRIMARY KEY, total int NOT NULL);
        INSERT INTO {schema}.daily VALUES (1, 10), (2, 20), (3, 30);
        UPDATE {schema}.daily SET total = total + 1 WHERE day >= 2;
        DELETE FROM {schema}.daily WHERE day = 1;
    """

    code = _run(step_env, script)

    assert code == 0
    result = _result(termination_log)
    assert (result["rowsAffected"], result["statements"]) == (3 + 2 + 1, 4)  # CREATE TABLE counts no rows
    assert _query(database_url, f"SELECT day, total FROM {schema}.daily ORDER BY day") == [(2, 21), (3, 31)]


def test_a_failing_statement_rolls_back_the_whole_script_and_exits_1_with_the_sqlstate(
    step_env: pytest.MonkeyPatch, database_url: str, schema: str, termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _source_table(database_url, schema, rows=5)
    script = f"""
        CREATE TABLE {schema}.created_by_script (x int);
        INSERT INTO {schema}.big_orders SELECT * FROM {schema}.orders;
        INSERT INTO {schema}.big_orders SELECT * FROM {schema}.no_such_table;
    """

    code = _run(step_env, script)

    assert code == step.EXIT_SQL_ERROR == 1
    assert _result(termination_log) == {
        "error": f'relation "{schema}.no_such_table" does not exist',
        "sqlstate": "42P01",
    }
    assert _query(database_url, f"SELECT count(*) FROM {schema}.big_orders") == [(0,)]
    assert _query(database_url, f"SELECT to_regclass('{schema}.created_by_script')") == [(None,)]
    stderr = capsys.readouterr().err
    assert "nothing was committed" in stderr and "42P01" in stderr and "no_such_table" in stderr


def test_a_missing_database_url_exits_2_and_names_the_variable(
    step_env: pytest.MonkeyPatch, termination_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step_env.delenv(step.ENV_DATABASE_URL)

    code = _run(step_env, "SELECT 1")

    assert code == step.EXIT_CONFIG_ERROR == 2
    assert "HEADWATER_DATABASE_URL is not set" in capsys.readouterr().err
    assert "HEADWATER_DATABASE_URL" in _result(termination_log)["error"]


def test_bound_parameters_are_stored_verbatim_even_with_quotes_and_semicolons(
    step_env: pytest.MonkeyPatch, database_url: str, schema: str, termination_log: Path
) -> None:
    hostile = f"O'Brien'); DROP TABLE {schema}.notes; -- 100% \\ done"
    script = f"""
        CREATE TABLE {schema}.notes (run_date date NOT NULL, note text NOT NULL, meta jsonb);
        INSERT INTO {schema}.notes VALUES (%(run_date)s, %(note)s, %(meta)s);
        UPDATE {schema}.notes SET note = note || %(suffix)s WHERE run_date = %(run_date)s AND note LIKE 'O%%';
    """
    meta = {"source": "api", "n": [1, 2]}
    params = {"run_date": "2026-11-23", "note": hostile, "suffix": ";'", "meta": meta}

    code = _run(step_env, script, params)

    assert code == 0
    assert _result(termination_log)["rowsAffected"] == 2
    rows = _query(database_url, f"SELECT run_date::text, note, meta FROM {schema}.notes")
    assert rows == [("2026-11-23", hostile + ";'", meta)]


def test_without_parameters_a_percent_sign_in_the_sql_is_sent_unchanged(
    step_env: pytest.MonkeyPatch, database_url: str, schema: str
) -> None:
    code = _run(step_env, f"CREATE TABLE {schema}.t AS SELECT '100%' AS share, '%(x)s' AS text")

    assert code == 0
    assert _query(database_url, f"SELECT share, text FROM {schema}.t") == [("100%", "%(x)s")]


def test_a_script_read_from_a_file_runs_instead_of_the_inline_sql(
    step_env: pytest.MonkeyPatch, database_url: str, schema: str, tmp_path: Path, termination_log: Path
) -> None:
    script = tmp_path / "script.sql"
    script.write_text(f"CREATE TABLE {schema}.from_file AS SELECT generate_series(1, 4) AS n;\n")
    step_env.setenv(step.ENV_SQL_FILE, str(script))

    code = _run(step_env, f"CREATE TABLE {schema}.inline (x int)")

    assert code == 0
    assert _result(termination_log)["rowsAffected"] == 4
    assert _query(database_url, f"SELECT to_regclass('{schema}.inline') IS NULL, count(*) "
                                f"FROM {schema}.from_file") == [(True, 4)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_database_exits_1_with_the_connection_error(
    step_env: pytest.MonkeyPatch, termination_log: Path
) -> None:
    step_env.setenv(step.ENV_DATABASE_URL, f"postgresql://nobody@127.0.0.1:{_closed_port()}/db?connect_timeout=5")

    code = _run(step_env, "SELECT 1")

    assert code == 1
    assert "127.0.0.1" in _result(termination_log)["error"]


def _subprocess_env(database_url: str, termination_log: Path, sql: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED_PREFIXES)}
    env.update({
        step.ENV_DATABASE_URL: database_url,
        step.ENV_TERMINATION_LOG: str(termination_log),
        step.ENV_SQL: sql,
        step.ENV_STEP_PARAMS: json.dumps({"label": "from a subprocess"}),
    })
    return env


def test_python_dash_m_runs_the_step_and_exits_with_its_code(
    database_url: str, schema: str, termination_log: Path
) -> None:
    script = f"CREATE TABLE {schema}.p (label text); INSERT INTO {schema}.p VALUES (%(label)s), (%(label)s)"

    ok = subprocess.run(
        [sys.executable, "-m", "headwater.steps.sql"],
        env=_subprocess_env(database_url, termination_log, script),
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert _result(termination_log)["rowsAffected"] == 2
    assert "2 row(s) affected" in ok.stderr

    failed = subprocess.run(
        [sys.executable, "-m", "headwater.steps.sql"],
        env=_subprocess_env(database_url, termination_log, f"SELECT * FROM {schema}.missing"),
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert failed.returncode == 1
    assert _result(termination_log)["sqlstate"] == "42P01"
    assert _query(database_url, f"SELECT label FROM {schema}.p") == [("from a subprocess",)] * 2


def _sleeping_backends(database_url: str, marker: str) -> list[tuple[Any, ...]]:
    return _query(database_url, "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
                                f"AND query LIKE '%{marker}%' AND query NOT LIKE '%pg_stat_activity%'")


def test_sigterm_cancels_the_running_query_on_the_server_and_reports_it(
    database_url: str, termination_log: Path
) -> None:
    marker = f"m{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "headwater.steps.sql"],
        env={**_subprocess_env(database_url, termination_log, f"SELECT pg_sleep(120) /* {marker} */"),
             step.ENV_STEP_PARAMS: ""},
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: _sleeping_backends(database_url, marker), timeout=30, message="the query to run")
        proc.terminate()  # what the kubelet sends when a Job's deadline passes or a run is cancelled
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == step.EXIT_TERMINATED, stderr
    assert "terminated" in _result(termination_log)["error"]
    # Cancelled in the server too: no backend left sleeping on behalf of a step that is gone.
    wait_for(lambda: not _sleeping_backends(database_url, marker), timeout=5, message="the query to be cancelled")


def test_checks_are_measured_after_the_commit_and_their_verdicts_follow_from_the_result(
        step_env: pytest.MonkeyPatch, schema: str, termination_log: Path) -> None:
    table = f"{schema}.payments"
    spec = StepSpec.model_validate({"id": "extract", "type": "sql", "sql": "SELECT 1", "outputs": [{
        "namespace": "postgres://warehouse", "name": table, "checks": [
            {"name": "same-columns", "schemaUnchanged": True},
            {"name": "no-negative", "sql": f"SELECT * FROM {table} WHERE amount < 0"},
            {"name": "broken", "sql": "SELECT * FROM no_such_table"},
            {"name": "fresh", "freshness": {"maxAge": "1h", "column": "paid_at"}}]}]})
    [measures] = [e for e in _container_env(spec) if e["name"] == step.ENV_CHECKS]
    step_env.setenv(step.ENV_CHECKS, measures["value"])
    code = _run(step_env, f"CREATE TABLE {table} (id int, amount int, paid_at timestamptz); "
                          f"INSERT INTO {table} VALUES (1, 10, now()), (2, -5, now() - interval '2 hours')")
    assert code == 0
    result = _result(termination_log)
    block = result["outputs"][table]
    assert block["columns"] == ["id integer", "amount integer", "paid_at timestamp with time zone"]
    assert block["checks"] == {"no-negative": 1}
    assert "no_such_table" in result["checkErrors"][f"{table}: checks.broken"]
    verdicts = {r.name: r.outcome for r in checks.evaluate_step(spec, result, datetime.now(UTC), {})}
    assert verdicts == {"same-columns": CheckOutcome.SKIPPED, "no-negative": CheckOutcome.FAILED,
                        "broken": CheckOutcome.FAILED, "fresh": CheckOutcome.PASSED}


def _container_env(spec: StepSpec) -> list[dict[str, Any]]:
    job = build_job(RunRef("r", "ns", "uid", "p"), spec, JobSettings(step_image="headwater:test"))
    return list(job["spec"]["template"]["spec"]["containers"][0]["env"])
