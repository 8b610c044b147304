"""`routesim import promptfoo`: results JSON, where `cached` is promptfoo's own response cache."""

from __future__ import annotations

import pytest

from tests.import_helpers import FIXTURES, read_import

RESULTS = FIXTURES / "promptfoo_results.json"


@pytest.fixture
def imported(cli, tmp_path):
    result = cli("import", "promptfoo", RESULTS, "-o", tmp_path / "data", "--request-id", "request_id",
                 "--slice", "feature")
    assert result.code == 0, result.err
    return read_import(tmp_path / "data")


def test_providers_become_models_and_success_becomes_passed(imported):
    mini, haiku = imported.outcomes["req-1", "gpt-4o-mini", 0], imported.outcomes["req-1", "claude-haiku", 0]
    assert (mini["passed"], mini["score"], mini["grader"]) == (True, 1.0, "deterministic")
    assert (haiku["passed"], haiku["score"], haiku["grader"]) == (False, 0.4, "llm_judge")  # llm-rubric
    assert (mini["input_tokens"], mini["output_tokens"], mini["latency_ms"], mini["cost_usd"]) == (1200, 30, 850.0, 0.0004)
    assert mini["cached_input_tokens"] is None  # tokenUsage.cached is promptfoo's response cache
    assert imported.traffic["req-1"]["slice"] == "faq"


def test_answers_from_promptfoos_cache_and_errors_without_usage_are_not_calls(imported):
    report = imported.report[0]
    assert report["dropped"]["no input token count"]["rows"] == 1  # the cached answer
    assert report["dropped"]["promptfoo error without usage (timeout)"]["examples"][0].endswith("Request timed out")
    assert any("promptfoo's response cache" in note for note in report["assumptions"])
    assert sorted(imported.traffic) == ["req-1"]


def test_without_a_request_id_var_tests_are_numbered(cli, tmp_path):
    assert cli("import", "promptfoo", RESULTS, "-o", tmp_path / "data").code == 0
    assert sorted(read_import(tmp_path / "data").traffic) == ["test-0"]


def test_rows_without_a_test_index_name_the_request_id_option(cli, tmp_path):
    """An export that does not number its tests (no testIdx): each row is dropped with the way out,
    --request-id VAR; with it, the rows import."""
    import json

    export = json.loads(RESULTS.read_text())
    for row in export["results"]["results"]:
        row.pop("testIdx", None)
    path = tmp_path / "unnumbered.json"
    path.write_text(json.dumps(export))
    refused = cli("import", "promptfoo", path, "-o", tmp_path / "data")
    assert refused.code == 2 and "--request-id VAR" in refused.err + refused.out
    result = cli("import", "promptfoo", path, "-o", tmp_path / "named", "--request-id", "request_id")
    assert result.code == 0, result.err
    assert sorted(read_import(tmp_path / "named").traffic) == ["req-1"]
