"""The real-log cases (tests/fixtures/real-logs/*/README.md): each input run as its README says, with the
right value the README works out by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.import_helpers import read_import

CASES = Path(__file__).resolve().parent / "fixtures" / "real-logs"


@pytest.fixture
def case(tmp_path):
    def copy(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(CASES / name, folder)
        return folder
    return copy


def replay_totals(cli, folder: Path, *scenarios: str) -> dict[str, tuple[int, float]]:
    result = cli("replay", *(folder / scenario for scenario in scenarios), "--json")
    assert result.code == 0, result.err
    return {summary["scenario"]: (summary["requests"], summary["total_cost_usd"]) for summary in json.loads(result.out)}


def import_litellm(cli, folder: Path, log: str) -> None:
    result = cli("import", "litellm", folder / log, "-o", folder / "out" / "data", "--assume-passed")
    assert result.code == 0, result.err


def test_c04_a_streamed_row_with_cached_tokens_0_reads_its_cache_reads(cli, case):
    """Streamed: 4 x 0.80 + 2,455 x 0.08 + 23 x 4 = $0.000292 per million-token prices; the control row
    4 x 0.80 + 2,451 x 0.08 + 34 x 4 = $0.000335; total $0.000627 (not the issue's $0.002394)."""
    folder = case("C04-litellm-stream-cache-read")
    import_litellm(cli, folder, "spend_logs.json")
    assert read_import(folder / "out" / "data").outcome("req-stream-1")["cached_input_tokens"] == 2455
    (requests, total), = replay_totals(cli, folder, "scenario.yaml").values()
    assert requests == 2 and total == pytest.approx(0.000627, abs=5e-7)


def test_c07_the_langfuse_blob_export_imports_with_snake_case_fields(cli, case):
    folder = case("C07-langfuse-blob-export")
    result = cli("import", "langfuse", folder / "observations_v2.jsonl", "-o", folder / "out" / "data",
                 "--slice", "feature", "--assume-passed")
    assert result.code == 0, result.err
    imported = read_import(folder / "out" / "data")
    assert len(imported.outcomes) == 2  # the SPAN is ignored
    ok, failed = imported.outcome("obs-001"), imported.outcome("obs-002")
    assert (ok["input_tokens"], ok["output_tokens"], ok["latency_ms"], ok["ttft_ms"], ok["cost_usd"]) == \
        (1200, 300, 1509.0, 412.0, 0.00036)
    assert (failed["input_tokens"], failed["output_tokens"], failed["latency_ms"], failed["hard_check_ok"]) == \
        (800, 0, 2250.0, False)
    assert failed["error_type"] == "rate_limit"
    assert (imported.traffic["obs-001"]["slice"], imported.traffic["obs-002"]["slice"]) == ("faq", "billing")


def test_c13_a_call_with_zero_tokens_and_a_recorded_spend_is_priced_at_its_spend(cli, case):
    """$0.00002 recorded for the row without usage + 30 x 0.50 + 12 x 1.50 = $0.000033 = $0.000053 under
    the sheet, as under the recorded costs."""
    folder = case("C13-litellm-zero-usage")
    import_litellm(cli, folder, "spend_logs.csv")
    report = read_import(folder / "out" / "data").report[0]
    assert report["calls_without_usage"] == 1
    totals = replay_totals(cli, folder, "scenario.yaml", "scenario-recorded.yaml")
    assert totals["turbo"][1] == pytest.approx(0.000053, abs=5e-10)
    assert totals["turbo-recorded"][1] == pytest.approx(0.000053, abs=5e-10)


def test_c13_provenance_names_both_sources_and_counts_every_call_priced_at_its_recorded_cost(cli, case):
    """turbo: the sheet prices the normal call and the recorded spend the call without usage, so its source is
    'mixed' and 1 call is counted; turbo-recorded has no sheet, so both calls are at their recorded cost."""
    folder = case("C13-litellm-zero-usage")
    import_litellm(cli, folder, "spend_logs.csv")
    result = cli("replay", folder / "scenario.yaml", folder / "scenario-recorded.yaml", "--json")
    assert result.code == 0, result.err
    provenance = {summary["scenario"]: summary["provenance"] for summary in json.loads(result.out)}
    assert provenance["turbo"]["price_sources"] == {"gpt-3.5-turbo": "mixed"}
    assert provenance["turbo"]["calls_priced_at_recorded_cost"] == {"gpt-3.5-turbo": 1}
    assert provenance["turbo-recorded"]["price_sources"] == {"gpt-3.5-turbo": "recorded"}
    assert provenance["turbo-recorded"]["calls_priced_at_recorded_cost"] == {"gpt-3.5-turbo": 2}


def test_c14_a_litellm_prefixed_call_type_is_a_completion(cli, case):
    """52 x 0.50 + 18 x 1.50 = $0.000053 and 30 x 0.50 + 12 x 1.50 = $0.000033: $0.000086 for 2 requests."""
    folder = case("C14-litellm-legacy-call-type")
    import_litellm(cli, folder, "spend_logs.csv")
    (requests, total), = replay_totals(cli, folder, "scenario.yaml").values()
    assert requests == 2 and total == pytest.approx(0.000086, abs=5e-10)
