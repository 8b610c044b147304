"""`routesim import inspect-ai`: eval logs as a new data folder (they carry usage) and their grades."""

from __future__ import annotations

import json
import zipfile

import pytest

from tests.import_helpers import FIXTURES, read_import

LOG = FIXTURES / "inspect_eval.json"
MODEL = "openai/gpt-4o-mini"


@pytest.fixture
def imported(cli, tmp_path):
    result = cli("import", "inspect-ai", LOG, "-o", tmp_path / "data", "--slice", "feature")
    assert result.code == 0, result.err
    return read_import(tmp_path / "data")


def test_epochs_become_samples_and_letter_grades_become_passed(imported):
    first, second = imported.outcomes["req-3", MODEL, 0], imported.outcomes["req-3", MODEL, 1]
    assert (first["passed"], first["score"], first["grader"], first["passed_source"]) == \
        (True, 1.0, "deterministic", "graded")
    assert (second["passed"], second["score"]) == (False, 0.0)


def test_usage_reads_inspects_disjoint_cache_fields_and_older_inclusive_logs(imported):
    current = imported.outcomes["req-3", MODEL, 0]  # input 200 + cache read 1000, total 1230
    older = imported.outcomes["req-3", MODEL, 1]  # input 1200 already holding the 1000, total 1228
    assert (current["input_tokens"], current["cached_input_tokens"]) == (1200, 1000)
    assert (older["input_tokens"], older["cached_input_tokens"]) == (1200, 1000)


def test_latency_is_the_evaluated_models_generation_time_in_seconds(imported):
    assert imported.outcomes["req-3", MODEL, 0]["latency_ms"] == pytest.approx(850.0)  # its model event only
    assert imported.outcomes["req-7", MODEL, 0]["latency_ms"] == pytest.approx(12500.0)  # output.time
    assert imported.outcomes["req-8", MODEL, 0]["latency_ms"] == pytest.approx(4000.0)  # working_time


def test_partial_credit_truncation_and_errors(imported):
    partial = imported.outcomes["req-7", MODEL, 0]  # "P" with stop reason max_tokens
    assert (partial["score"], partial["passed"], partial["hard_check_ok"]) == (0.5, False, False)
    errored = imported.outcomes["req-8", MODEL, 0]  # no score, sample error
    assert (errored["score"], errored["passed"], errored["hard_check_ok"]) == (None, False, False)


def test_a_judge_models_usage_is_left_out(imported):
    assert imported.outcomes["req-9", MODEL, 0]["input_tokens"] == 500
    assert any("openai/gpt-4o" in note for note in imported.report[0]["assumptions"])


def test_slice_from_sample_metadata_else_the_task(imported):
    assert imported.traffic["req-3"]["slice"] == "faq"
    assert imported.traffic["req-9"]["slice"] == "support_qa"


def test_a_lower_pass_threshold_counts_partial_credit(cli, tmp_path):
    assert cli("import", "inspect-ai", LOG, "-o", tmp_path / "data", "--pass-threshold", "0.5").code == 0
    assert read_import(tmp_path / "data").outcomes["req-7", MODEL, 0]["passed"]


def test_several_scorers_need_a_choice(cli, tmp_path):
    log = json.loads(LOG.read_text())
    for sample in log["samples"]:
        sample["scores"]["model_graded_qa"] = {"value": "C"}
    path = tmp_path / "two-scorers.json"
    path.write_text(json.dumps(log))
    refused = cli("import", "inspect-ai", path, "-o", tmp_path / "a")
    assert refused.code == 2 and "several scorers: match, model_graded_qa" in refused.err
    assert cli("import", "inspect-ai", path, "-o", tmp_path / "b", "--scorer", "model_graded_qa").code == 0
    chosen = read_import(tmp_path / "b").outcomes["req-3", MODEL, 1]
    assert (chosen["passed"], chosen["grader"]) == (True, "llm_judge")


def test_an_eval_archive_reads_like_the_json_log(cli, tmp_path, imported):
    log = json.loads(LOG.read_text())
    archive = tmp_path / "log.eval"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("header.json", json.dumps({key: value for key, value in log.items() if key != "samples"}))
        for sample in log["samples"]:
            zipped.writestr(f"samples/{sample['id']}_epoch_{sample['epoch']}.json", json.dumps(sample))
    assert cli("import", "inspect-ai", archive, "-o", tmp_path / "from-eval", "--slice", "feature").code == 0
    assert read_import(tmp_path / "from-eval").outcomes == imported.outcomes


def test_a_file_that_is_no_eval_log_is_refused(cli, tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"results": []}')
    result = cli("import", "inspect-ai", path, "-o", tmp_path / "data")
    assert result.code == 2 and "not an inspect-ai eval log" in result.err and str(path) in result.err
