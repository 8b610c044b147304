"""The reliability cases of issue 14: each small world and command that routesim once mishandled.

The inputs are committed copies of `../shared/cases/reliability/` (tests/fixtures/reliability/; F03, the
10,000-rule scenario, belongs to the rule compilation's own tests). Each case runs in a scratch copy,
in-process through the CLI's entry point, and must end with exit 0 or 2, no traceback, the message that
says what is wrong, and every input file as it was. Generated inputs (deep.yaml, deep.jsonl) are made by
the case's own generator script.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

CASES = Path(__file__).parent / "fixtures" / "reliability"


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@dataclass(frozen=True)
class Case:
    folder: str
    args: tuple[str, ...]
    code: int
    fragments: tuple[str, ...] = ()
    generate: str | None = None  # the case's generator script, run in the scratch copy first
    setup_folder: str | None = None  # a folder to create first (a folder where a file is expected)


CASE_TABLE = [
    Case("F01-tz-panic", ("validate", "w"), 0),
    Case("F01-tz-panic", ("replay", "s.yaml"), 0),
    Case("F07-internal-errors", ("validate", "corrupt"), 2, ("cannot be decoded", "corrupt/outcomes.parquet")),
    Case("F07-internal-errors", ("validate", "negsample"), 2,
         ("column 'sample'", "negative", "samples do not run 0, 1, 2")),
    Case("F07-internal-errors", ("replay", "list-rule.yaml"), 2,
         ("reads column 'tags'", "List(String)", "policy.rules[0].when")),
    Case("F07-internal-errors", ("replay", "cast-rule.yaml"), 2,
         ("scenario 's' cannot be replayed", "request_id", "CAST")),
    Case("F07-internal-errors", ("replay", "parens.yaml"), 2, ("nests parentheses more than 32 levels",)),
    Case("F07-internal-errors", ("replay", "negative-seed.yaml"), 2, ("sample.seed", "must be at least 0")),
    Case("F07-internal-errors", ("replay", "feb30.yaml"), 2, ("'2026-02-30'", "not a real date", "feb30.yaml, line 4")),
    Case("F07-internal-errors", ("replay", "deep.yaml"), 2, ("nested more than 64 levels", "deep.yaml, line"),
         generate="gen_deep_yaml.py"),
    Case("F07-internal-errors", ("import", "otel", "otel-overflow.jsonl", "-o", "o1", "--assume-passed"), 2,
         ("startTimeUnixNano", "out of the range of a timestamp", "no row could be imported")),
    Case("F07-internal-errors", ("whatif", "cascade.yaml", "--scale", "flagship=inf"), 2,
         ("--scale 'flagship=inf'", "a factor from 0 to 1,000,000")),
    Case("F07-internal-errors", ("replay", "cascade.yaml", "--decisions", "prices.yaml/d.parquet"), 2,
         ("prices.yaml/d.parquet lies inside an input", "prices.yaml")),
    Case("F08-misleading", ("replay", "a-folder.yaml"), 2, ("a-folder.yaml is a folder", "YAML file is expected"),
         setup_folder="a-folder.yaml"),
    Case("F10-overwrite-inputs", ("replay", "w.yaml", "--save", "."), 2, ("the output w is an input of this run",)),
    Case("F10-overwrite-inputs", ("replay", "w.yaml", "--decisions", "w/outcomes.parquet"), 2,
         ("w/outcomes.parquet lies inside an input", "never writes over its inputs")),
]


def run_case(cli, tmp_path, monkeypatch, case: Case):
    scratch = tmp_path / case.folder
    shutil.copytree(CASES / case.folder, scratch)
    monkeypatch.chdir(scratch)
    if case.generate:
        subprocess.run([sys.executable, case.generate], cwd=scratch, check=True)
    if case.setup_folder:
        (scratch / case.setup_folder).mkdir()
    before = file_hashes(scratch)
    result = cli(*case.args)
    after = file_hashes(scratch)
    assert "Traceback" not in result.out + result.err
    assert {name: after.get(name) for name in before} == before, "an input file changed"
    return result, scratch


@pytest.mark.parametrize("case", CASE_TABLE, ids=lambda case: f"{case.folder}:{' '.join(case.args)[:40]}")
def test_case_is_handled(cli, tmp_path, monkeypatch, case):
    result, _ = run_case(cli, tmp_path, monkeypatch, case)
    assert result.code == case.code, (result.out, result.err)
    for fragment in case.fragments:
        assert fragment in result.out + result.err, f"{fragment!r} not in:\n{result.out}{result.err}"
    if case.code == 2:
        assert "fix:" in result.err and "internal error" not in result.err


def test_a_ts_with_a_utc_offset_is_converted_to_utc(cli, tmp_path, monkeypatch):
    """F01: +05:30 is a valid offset. The stored instants are 01:00-04:00 UTC on 2026-11-16."""
    result, scratch = run_case(cli, tmp_path, monkeypatch, Case("F01-tz-panic", ("replay", "s.yaml", "--json"), 0))
    assert result.code == 0, result.err
    provenance = json.loads(result.out)[0]["provenance"]
    assert (provenance["first_request"], provenance["last_request"]) == ("2026-11-16T01:00:00+00:00",
                                                                         "2026-11-16T04:00:00+00:00")


def test_a_token_count_beyond_any_context_drops_only_its_row(cli, tmp_path, monkeypatch):
    case = Case("F07-internal-errors", ("import", "litellm", "huge-tokens.jsonl", "-o", "o2", "--assume-passed"), 0)
    result, scratch = run_case(cli, tmp_path, monkeypatch, case)
    assert result.code == 0, result.err
    assert "prompt_tokens=1000000000000000000000000000000 is too large" in result.out
    assert pl.read_parquet(scratch / "o2" / "traffic.parquet")["request_id"].to_list() == ["c2"]


def test_json_nested_deeper_than_the_parser_drops_only_its_line(cli, tmp_path, monkeypatch):
    case = Case("F07-internal-errors", ("import", "litellm", "deep.jsonl", "-o", "o3", "--assume-passed"), 0,
                generate="gen_deep_jsonl.py")
    result, scratch = run_case(cli, tmp_path, monkeypatch, case)
    assert result.code == 0, result.err
    assert "nested too deeply: 1" in result.out and "deep.jsonl, line 2" in result.out
    assert pl.read_parquet(scratch / "o3" / "traffic.parquet")["request_id"].to_list() == ["c1"]


def test_a_byte_order_mark_does_not_cost_the_first_row(cli, tmp_path, monkeypatch):
    """F14: the file starts with a BOM; both rows are imported."""
    case = Case("F14-bom-jsonl", ("import", "litellm", "bom.jsonl", "-o", "out", "--assume-passed"), 0)
    result, scratch = run_case(cli, tmp_path, monkeypatch, case)
    assert result.code == 0, result.err
    assert "dropped: none" in result.out
    assert sorted(pl.read_parquet(scratch / "out" / "traffic.parquet")["request_id"]) == ["c1", "c2"]


def test_a_suggestion_never_carries_an_invisible_character(cli, tmp_path, monkeypatch):
    """F08: the CSV header starts with a BOM; the column is read as 'id', so no suggestion is needed."""
    case = Case("F08-misleading", ("import", "csv", "bom-grades.csv", "-o", "g", "--map", "request_id=id",
                                   "--map", "model=model_name", "--map", "passed=correct"), 2)
    result, _ = run_case(cli, tmp_path, monkeypatch, case)
    assert result.code == 2
    assert "\ufeff" not in result.out + result.err
    assert "has no column 'id'" not in result.err
