"""The sql step runner's pure parts: reading its environment and shaping its termination message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from headwater.steps import sql as step

pytestmark = pytest.mark.unit

URL = "postgresql://etl:s3cret@db.example:5432/warehouse"


def _env(**extra: str) -> dict[str, str]:
    return {step.ENV_SQL: "SELECT 1", step.ENV_DATABASE_URL: URL, **extra}


def test_a_complete_environment_becomes_a_config_with_the_default_termination_log() -> None:
    config = step.load_config(_env())

    assert config == step.StepConfig(sql="SELECT 1", database_url=URL, params=None,
                                     termination_log=Path("/dev/termination-log"))


def test_the_termination_log_path_can_be_overridden() -> None:
    config = step.load_config(_env(HEADWATER_TERMINATION_LOG="/tmp/result"))

    assert config.termination_log == Path("/tmp/result")


def test_a_missing_sql_names_both_variables_that_could_provide_it() -> None:
    with pytest.raises(step.ConfigError, match=r"HEADWATER_SQL is not set.*HEADWATER_SQL_FILE"):
        step.load_config({step.ENV_DATABASE_URL: URL})


def test_blank_sql_is_rejected() -> None:
    with pytest.raises(step.ConfigError, match="HEADWATER_SQL is empty"):
        step.load_config(_env(HEADWATER_SQL="  \n "))


def test_a_sql_file_wins_over_inline_sql(tmp_path: Path) -> None:
    script = tmp_path / "x.sql"
    script.write_text("DELETE FROM t;")

    assert step.load_config(_env(HEADWATER_SQL_FILE=str(script))).sql == "DELETE FROM t;"


def test_an_unreadable_sql_file_names_the_variable_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sql"

    with pytest.raises(step.ConfigError, match=re.escape(f"HEADWATER_SQL_FILE={missing} cannot be read")):
        step.load_config(_env(HEADWATER_SQL_FILE=str(missing)))


@pytest.mark.parametrize(("env", "state"), [({}, "is not set"), ({step.ENV_DATABASE_URL: " "}, "is empty")])
def test_a_missing_or_empty_database_url_names_the_variable(env: dict[str, str], state: str) -> None:
    with pytest.raises(step.ConfigError, match=rf"HEADWATER_DATABASE_URL {state}: .*connectionSecretRef"):
        step.load_config({step.ENV_SQL: "SELECT 1", **env})


def test_without_a_database_url_libpq_pg_variables_are_used_when_they_name_a_server() -> None:
    config = step.load_config({step.ENV_SQL: "SELECT 1", "PGHOST": "db.example", "PGUSER": "etl"})

    assert config.database_url == ""


@pytest.mark.parametrize("url", ["s3cret", "postgresql://etl:s3cret@db/warehouse?bogus=1"])
def test_an_invalid_database_url_is_reported_without_repeating_its_password(url: str) -> None:
    with pytest.raises(step.ConfigError, match="not a valid libpq connection string") as raised:
        step.load_config(_env(HEADWATER_DATABASE_URL=url))

    assert "s3cret" not in str(raised.value)


def test_step_params_become_named_parameters_with_objects_as_jsonb() -> None:
    params = {"run_date": "2026-11-23", "limit": 10, "tags": ["a"], "meta": {"k": 1}, "none": None}

    config = step.load_config(_env(HEADWATER_STEP_PARAMS=json.dumps(params)))

    assert config.params is not None
    assert {k: v for k, v in config.params.items() if k != "meta"} == {
        "run_date": "2026-11-23", "limit": 10, "tags": ["a"], "none": None}
    assert isinstance(config.params["meta"], Jsonb) and config.params["meta"].obj == {"k": 1}


def test_blank_step_params_mean_no_parameters() -> None:
    assert step.load_config(_env(HEADWATER_STEP_PARAMS=" ")).params is None


@pytest.mark.parametrize(("text", "problem"), [("{run_date: 1}", "is not valid JSON"),
                                               ('["2026-11-23"]', "must be a JSON object.*not a list")])
def test_step_params_that_are_not_a_json_object_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(step.ConfigError, match=rf"HEADWATER_STEP_PARAMS {problem}"):
        step.load_config(_env(HEADWATER_STEP_PARAMS=text))


def test_the_error_message_is_the_first_line_cut_to_the_limit() -> None:
    exc = ValueError("syntax error at or near \"SELEC\"\nLINE 1: SELEC 1\n        ^")

    assert step.error_message(exc) == 'syntax error at or near "SELEC"'
    assert step.error_message(ValueError("x" * 50), limit=10) == "x" * 9 + "…"


def test_the_error_message_of_an_exception_without_text_is_its_type() -> None:
    assert step.error_message(psycopg.OperationalError()) == "OperationalError"


def test_a_huge_error_is_shortened_until_the_message_fits_kubernetes_limit() -> None:
    payload = {"error": "€" * 5000, "sqlstate": "XX000"}

    text = step.termination_message(payload)

    assert len(text.encode()) <= step.MAX_MESSAGE_BYTES
    decoded = json.loads(text)
    assert decoded["sqlstate"] == "XX000"
    assert decoded["error"].startswith("€€€") and decoded["error"].endswith("…")


def test_a_small_result_is_compact_json_left_as_it_is() -> None:
    result = step.StepResult(rows_affected=1234, statements=2, duration_seconds=0.41999)

    assert step.termination_message(result.as_message()) == (
        '{"rowsAffected":1234,"statements":2,"durationSeconds":0.42}')


def test_help_exits_0_and_an_unknown_argument_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert step.main(["--help"]) == 0
    assert "HEADWATER_DATABASE_URL" in capsys.readouterr().out
    assert step.main(["--bogus"]) == step.EXIT_CONFIG_ERROR
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
