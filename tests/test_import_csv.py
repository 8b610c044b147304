"""`routesim import csv`: a plain CSV with a column map, units stated by the user."""

from __future__ import annotations

import pytest

from tests.import_helpers import read_import

ANSWERS = """id,llm,ok,rating,when,prompt_tokens,cached,completion_tokens,seconds,cents,team
a,small,true,8,2026-11-16T09:00:00Z,1000,600,50,1.25,0.12,support
a,big,false,3,2026-11-16T09:00:00Z,1000,,80,2.5,1.5,support
b,small,yes,10,1794819660,400,0,20,0.5,0.02,sales
"""


@pytest.fixture
def answers(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text(ANSWERS)
    return path


COLUMNS = {"request_id": "id", "model": "llm", "passed": "ok", "score": "rating", "ts": "when",
           "input_tokens": "prompt_tokens", "cached_input_tokens": "cached", "output_tokens": "completion_tokens",
           "latency_ms": "seconds", "cost_usd": "cents"}


def column_map(*leave_out: str) -> list[str]:
    return [argument for field, column in COLUMNS.items() if field not in leave_out
            for argument in ("--map", f"{field}={column}")]


MAP = column_map()


def test_a_full_csv_becomes_a_data_folder_in_the_users_units(cli, tmp_path, answers):
    result = cli("import", "csv", answers, "-o", tmp_path / "data", *MAP, "--score-scale", "10",
                 "--latency-unit", "s", "--cost-unit", "cents", "--column", "team")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    small = data.outcomes["a", "small", 0]
    assert (small["score"], small["latency_ms"], small["cost_usd"]) == (0.8, 1250.0, pytest.approx(0.0012))
    assert (small["input_tokens"], small["cached_input_tokens"], small["passed"]) == (1000, 600, True)
    assert data.outcomes["a", "big", 0]["passed"] is False
    assert data.traffic["b"]["team"] == "sales" and data.traffic["b"]["ts"].isoformat() == "2026-11-16T09:01:00+00:00"


def test_cached_tokens_reported_on_top_of_the_input(cli, tmp_path, answers):
    assert cli("import", "csv", answers, "-o", tmp_path / "data", *MAP, "--score-scale", "10",
               "--usage", "exclusive").code == 0
    assert read_import(tmp_path / "data").outcomes["a", "small", 0]["input_tokens"] == 1600


def test_a_score_out_of_10_without_its_scale_is_reported_row_by_row(cli, tmp_path, answers):
    result = cli("import", "csv", answers, "-o", tmp_path / "data", *MAP)
    assert result.code == 2 and "no row could be imported (3 read, 3 dropped)" in result.err
    assert not (tmp_path / "data").exists()
    assert "score='8' is not in 0..1 (a score on another scale? give its maximum with --score-scale)" in result.out


def test_passed_from_a_score_threshold(cli, tmp_path, answers):
    assert cli("import", "csv", answers, "-o", tmp_path / "data", *column_map("passed"), "--score-scale", "10",
               "--pass-threshold", "0.7").code == 0
    data = read_import(tmp_path / "data")
    assert [data.outcomes[key]["passed"] for key in (("a", "small", 0), ("a", "big", 0), ("b", "small", 0))] == \
        [True, False, True]


def test_an_unknown_field_or_column_is_named_with_a_suggestion(cli, tmp_path, answers):
    field = cli("import", "csv", answers, "-o", tmp_path / "x", "--map", "passd=ok")
    assert field.code == 2 and "'passd' is not a field that can be mapped. Did you mean 'passed'?" in field.err
    column = cli("import", "csv", answers, "-o", tmp_path / "x", "--map", "request_id=idd")
    assert column.code == 2 and "the CSV has no column 'idd'. Did you mean 'id'?" in column.err


def test_a_new_folder_needs_usage_columns(cli, tmp_path, answers):
    result = cli("import", "csv", answers, "-o", tmp_path / "data", "--map", "request_id=id", "--map", "passed=ok")
    assert result.code == 2
    assert "maps no column to model, ts, input_tokens, output_tokens, latency_ms" in result.err
    assert "--merge" in result.err
