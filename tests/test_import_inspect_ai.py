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


def sample(sample_id: str, epoch, value="C", output_tokens: int = 10, **fields) -> dict:
    """A sample with only what the importer reads: 100 input tokens, `output_tokens` out, 1 s, `match` score."""
    return {"id": sample_id, "epoch": epoch, "scores": {"match": {"value": value}},
            "model_usage": {MODEL: {"input_tokens": 100, "output_tokens": output_tokens}}, "output": {"time": 1.0},
            "started_at": "2026-11-16T12:00:00+00:00"} | fields


def eval_log(path, *samples_) -> None:
    path.write_text(json.dumps({"version": 2, "eval": {"task": "t", "model": MODEL,
                                                       "created": "2026-11-16T12:00:00+00:00"},
                                "samples": list(samples_)}))


def test_a_dropped_epoch_leaves_the_requests_other_epochs_renumbered(cli, tmp_path):
    """Epoch 2 has no score: epochs 1 and 3 remain and become samples 0 and 1 (epoch 3 is told by its 30
    output tokens); the import goes on, says what it renumbered and counts the drop."""
    path = tmp_path / "gap.json"
    eval_log(path, sample("a", 1, output_tokens=10), sample("a", 2, scores={}), sample("a", 3, "I", output_tokens=30))
    result = cli("import", "inspect-ai", path, "-o", tmp_path / "data")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    assert sorted(data.outcomes) == [("a", MODEL, 0), ("a", MODEL, 1)]
    assert (data.outcomes["a", MODEL, 1]["output_tokens"], data.outcomes["a", MODEL, 1]["passed"]) == (30, False)
    assert data.report[0]["samples_renumbered"] == [f"request a, {MODEL}: samples 0, 2 as read -> 0, 1"]
    assert data.report[0]["dropped"]["no score"]["rows"] == 1
    assert "had their sample numbers renumbered" in result.out


def test_epochs_counted_from_zero_become_samples_from_zero(cli, tmp_path):
    path = tmp_path / "zero.json"
    eval_log(path, sample("a", 0, output_tokens=10), sample("a", 1, output_tokens=20))
    assert cli("import", "inspect-ai", path, "-o", tmp_path / "data").code == 0
    data = read_import(tmp_path / "data")
    assert [data.outcomes["a", MODEL, n]["output_tokens"] for n in (0, 1)] == [10, 20]
    assert "samples_renumbered" not in data.report[0]
    assert any("numbers its epochs from 0" in note for note in data.report[0]["assumptions"])


def test_merged_grades_keep_their_epoch_so_each_lands_on_its_own_answer(cli, tmp_path):
    """The folder has epochs 1-3 passed; the grades file lacks epoch 2's score and fails epoch 3: epoch 3's
    grade must fail sample 2, not move up onto sample 1."""
    first, grades = tmp_path / "first.json", tmp_path / "grades.json"
    eval_log(first, *(sample("a", epoch) for epoch in (1, 2, 3)))
    eval_log(grades, sample("a", 1), sample("a", 2, scores={}), sample("a", 3, "I"))
    assert cli("import", "inspect-ai", first, "-o", tmp_path / "data").code == 0
    assert cli("import", "inspect-ai", grades, "-o", tmp_path / "data", "--merge").code == 0
    data = read_import(tmp_path / "data")
    assert [data.outcomes["a", MODEL, n]["passed"] for n in (0, 1, 2)] == [True, True, False]


@pytest.mark.parametrize("fields, reason", [
    ({"epoch": "first"}, "bad epoch"),
    ({"epoch": -1}, "bad epoch"),
    ({"epoch": 1.5}, "bad epoch"),
    ({"model_usage": {MODEL: [1, 2]}}, "bad model_usage entry"),
    ({"model_usage": [1, 2]}, "bad model_usage"),
    ({"scores": [1]}, "bad scores"),
    ({"output": ["x"]}, "bad output"),
    ({"output": {"choices": {"stop_reason": "stop"}}}, "bad output.choices"),
    ({"events": "model"}, "bad events"),
    ({"events": [{"event": "model", "model": MODEL, "output": [0.5]}]}, "bad event output"),
    ({"started_at": float("inf")}, "bad started_at"),
])
def test_a_field_of_the_wrong_kind_drops_its_sample_with_the_reason(cli, tmp_path, fields, reason):
    path = tmp_path / "log.json"
    eval_log(path, sample("good", 1), sample("bad", 1) | fields)
    result = cli("import", "inspect-ai", path, "-o", tmp_path / "data")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    assert list(data.traffic) == ["good"]
    assert data.report[0]["dropped"][reason]["rows"] == 1
    assert f"{reason}: 1" in result.out


def test_a_stop_reason_of_another_kind_is_read_as_text(cli, tmp_path):
    path = tmp_path / "log.json"
    eval_log(path, sample("a", 1, output={"time": 1.0, "choices": [{"stop_reason": ["max_tokens"]}]}))
    assert cli("import", "inspect-ai", path, "-o", tmp_path / "data").code == 0
    assert read_import(tmp_path / "data").outcome("a")["hard_check_ok"]  # '["max_tokens"]' is no stop reason


def test_samples_that_are_not_a_list_refuse_the_file(cli, tmp_path):
    path = tmp_path / "log.json"
    path.write_text(json.dumps({"eval": {"task": "t", "model": MODEL}, "samples": {"id": "a"}}))
    result = cli("import", "inspect-ai", path, "-o", tmp_path / "data")
    assert result.code == 2 and "'samples' is not a list" in result.err and f"{path}, samples" in result.err


def test_an_unreadable_sample_of_an_eval_archive_drops_that_sample(cli, tmp_path):
    archive = tmp_path / "log.eval"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("header.json", json.dumps({"eval": {"task": "t", "model": MODEL}}))
        zipped.writestr("samples/a_epoch_1.json", json.dumps(sample("a", 1)))
        zipped.writestr("samples/b_epoch_1.json", '{"id": "b", "epoch": ')
        zipped.writestr("samples/c_epoch_1.json", b'{"id": "c\xe9"}')
    result = cli("import", "inspect-ai", archive, "-o", tmp_path / "data")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    assert list(data.traffic) == ["a"]
    dropped = data.report[0]["dropped"]
    assert dropped["not valid JSON"]["examples"] == [f"{archive}, samples/b_epoch_1.json: Expecting value at line 1, "
                                                     "column 22"]
    assert dropped["not UTF-8 text"]["rows"] == 1
