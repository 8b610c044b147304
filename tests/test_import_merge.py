"""`--merge`: grades from an eval tool onto a folder imported from traffic logs."""

from __future__ import annotations

import json

import pytest

from tests.import_helpers import FIXTURES, read_import

GRADES_MAP = ["--map", "request_id=id", "--map", "model=model_name", "--map", "passed=correct",
              "--map", "score=rating", "--score-scale", "10", "--map", "grader=judge"]


@pytest.fixture
def litellm_folder(cli, tmp_path):
    folder = tmp_path / "data"
    assert cli("import", "litellm", FIXTURES / "litellm_spend_logs.csv", "-o", folder, "--assume-passed").code == 0
    return folder


def test_grades_replace_assumed_verdicts_and_the_rest_stay_flagged(cli, litellm_folder):
    result = cli("import", "csv", FIXTURES / "grades.csv", "-o", litellm_folder, "--merge", *GRADES_MAP)
    assert result.code == 0, result.err
    data = read_import(litellm_folder)
    graded = data.outcome("chatcmpl-002")
    assert (graded["passed"], graded["score"], graded["grader"], graded["passed_source"]) == \
        (False, 0.4, "llm_judge", "graded")
    assert (graded["input_tokens"], graded["cost_usd"]) == (2000, 0.00564)  # usage untouched
    ungraded = data.outcome("chatcmpl-004")
    assert (ungraded["passed"], ungraded["passed_source"]) == (False, "assumed_from_status")
    assert [report["format"] for report in data.report] == ["litellm", "csv"]
    merge = data.report[1]
    assert (merge["grades_matched"], merge["answers_without_grade"]) == (3, 2)
    assert merge["dropped"]["no request with this id in the data folder"]["examples"] == [
        f"{FIXTURES / 'grades.csv'}, row 4: request chatcmpl-404, model gpt-4o"]
    assert merge["dropped"]["bad passed"]["rows"] == 1


def test_drop_ungraded_keeps_only_graded_answers(cli, litellm_folder):
    assert cli("import", "csv", FIXTURES / "grades.csv", "-o", litellm_folder, "--merge", "--drop-ungraded",
               *GRADES_MAP).code == 0
    data = read_import(litellm_folder)
    assert sorted(data.traffic) == ["chatcmpl-001", "chatcmpl-002", "chatcmpl-003"]
    assert {row["passed_source"] for row in data.outcomes.values()} == {"graded"}


def test_inspect_models_match_the_gateways_names_without_the_provider(cli, tmp_path):
    folder = tmp_path / "data"
    assert cli("import", "otel", FIXTURES / "otel_spans.jsonl", "-o", folder, "--request-id", "app.request_id",
               "--assume-passed").code == 0
    assert cli("import", "inspect-ai", FIXTURES / "inspect_eval.json", "-o", folder, "--merge").code == 0
    data = read_import(folder)
    answer = data.outcome("req-3")  # the gateway's gpt-4o-mini, graded as openai/gpt-4o-mini
    assert (answer["model"], answer["passed"], answer["score"], answer["passed_source"]) == \
        ("gpt-4o-mini", True, 1.0, "graded")
    assert not answer["hard_check_ok"]  # the span's truncated answer stays a failed hard check
    dropped = data.report[1]["dropped"]
    assert dropped["no answer of this model and sample for the request"]["rows"] == 1  # epoch 2
    assert dropped["no request with this id in the data folder"]["rows"] == 3


def test_a_grade_without_model_needs_a_request_with_one_model(cli, tmp_path):
    folder = tmp_path / "data"
    assert cli("import", "promptfoo", FIXTURES / "promptfoo_results.json", "-o", folder,
               "--request-id", "request_id").code == 0
    grades = tmp_path / "grades.csv"
    grades.write_text("request_id,passed\nreq-1,true\n")
    assert cli("import", "csv", grades, "-o", folder, "--merge").code == 0
    report = read_import(folder).report[1]
    assert report["dropped"]["the grade names no model and the request has answers of several"]["rows"] == 1


def test_repeated_grades_grade_samples_in_order_and_dropping_renumbers(cli, tmp_path):
    spans = tmp_path / "spans.jsonl"
    spans.write_text("".join(json.dumps({
        "spanId": f"s{second}", "start_time": f"2026-11-16T09:00:0{second}Z", "end_time": f"2026-11-16T09:00:0{second}.5Z",
        "attributes": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "small", "app.ticket": ticket,
                       "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5 + second}}) + "\n"
        for ticket, second in (("a", 0), ("a", 1), ("b", 2))))
    folder = tmp_path / "data"
    assert cli("import", "otel", spans, "-o", folder, "--request-id", "app.ticket", "--assume-passed").code == 0
    assert sorted(read_import(folder).outcomes) == [("a", "small", 0), ("a", "small", 1), ("b", "small", 0)]
    grades = tmp_path / "grades.csv"
    grades.write_text("request_id,model,sample,passed\na,small,1,false\n")
    assert cli("import", "csv", grades, "-o", folder, "--merge", "--drop-ungraded").code == 0
    data = read_import(folder)
    assert list(data.outcomes) == [("a", "small", 0)] and list(data.traffic) == ["a"]
    assert (data.outcomes["a", "small", 0]["output_tokens"], data.outcomes["a", "small", 0]["passed"]) == (6, False)


def test_merging_onto_a_missing_or_broken_folder_is_refused(cli, tmp_path, litellm_folder):
    missing = cli("import", "csv", FIXTURES / "grades.csv", "-o", tmp_path / "nothing", "--merge", *GRADES_MAP)
    assert missing.code == 2 and "data folder not found" in missing.err
    (litellm_folder / "outcomes.parquet").write_bytes(b"not parquet")
    broken = cli("import", "csv", FIXTURES / "grades.csv", "-o", litellm_folder, "--merge", *GRADES_MAP)
    assert broken.code == 2 and "cannot read" in broken.err and "outcomes.parquet" in broken.err
    assert (litellm_folder / "outcomes.parquet").read_bytes() == b"not parquet"


def test_a_merge_keeps_the_earlier_reports(cli, litellm_folder):
    before = json.loads((litellm_folder / "import-report.json").read_text())["imports"]
    cli("import", "csv", FIXTURES / "grades.csv", "-o", litellm_folder, "--merge", *GRADES_MAP)
    assert read_import(litellm_folder).report[0] == before[0]
