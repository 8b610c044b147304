"""`routesim prices import-litellm`: LiteLLM's per-token prices as a dated sheet, converted by hand."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from simulator.core.errors import RoutesimError, visible
from simulator.core.prices import load_prices

LITELLM = {
    "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "mode": "one of: chat, ..."},
    "gpt-4o-mini": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
                    "cache_read_input_token_cost": 7.5e-08, "input_cost_per_token_batches": 7.5e-08,
                    "litellm_provider": "openai", "mode": "chat"},
    "azure/gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "mode": "chat"},
    "azure/eu/gpt-4o": {"input_cost_per_token": 2.75e-06, "output_cost_per_token": 1.1e-05, "mode": "chat"},
    "bedrock/claude-x": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05, "mode": "chat"},
    "dall-e-3": {"output_cost_per_image": 0.04, "mode": "image_generation"},
}


@pytest.fixture
def litellm(tmp_path):
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(json.dumps(LITELLM))
    return path


def test_a_litellm_entry_converted_by_hand(cli, litellm, tmp_path):
    """gpt-4o-mini: 1.5e-07 USD/token = 0.15 USD per million input tokens, cached 7.5e-08 = 0.075, output
    6e-07 = 0.6. The batch input price alone (no batch output price) is not imported. claude-x is the one key ending in '/claude-x'."""
    out = tmp_path / "sheets" / "litellm.yaml"
    result = cli("prices", "import-litellm", litellm, "--as-of", "2026-11-16", "--models", "gpt-4o-mini,claude-x",
                 "--as", "flagship=azure/eu/gpt-4o", "-o", out)
    assert result.code == 0, result.err
    written = yaml.safe_load(out.read_text())
    assert written["models"]["gpt-4o-mini"] == [{"effective_from": __import__("datetime").date(2026, 11, 16),
                                                 "input": 0.15, "cached_input": 0.075, "output": 0.6}]
    assert written["models"]["claude-x"][0]["input"] == 3.0 and written["models"]["claude-x"][0]["output"] == 15.0
    assert "cached_input" not in written["models"]["claude-x"][0]
    assert written["models"]["flagship"][0]["input"] == 2.75 and written["models"]["flagship"][0]["output"] == 11.0
    assert "#   claude-x: bedrock/claude-x" in out.read_text()
    sheet = load_prices(out)
    assert sheet.models["gpt-4o-mini"][0].cached_input_price == 0.075
    assert not list(out.parent.glob(".*.tmp"))


def test_without_out_the_sheet_is_printed(cli, litellm):
    result = cli("prices", "import-litellm", litellm, "--as-of", "2026-11-16", "--models", "gpt-4o-mini")
    assert result.code == 0, result.err
    assert yaml.safe_load(result.out)["models"]["gpt-4o-mini"][0]["output"] == 0.6


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "gpt-4o"], "ambiguous: 2 provider-prefixed keys match it: azure/eu/gpt-4o, azure/gpt-4o"),
    (["--models", "gpt-4o-mni"], "Did you mean 'gpt-4o-mini'"),
    (["--models", "dall-e-3"], "has no usable per-token input_cost_per_token or output_cost_per_token (mode: image_generation)"),
    (["--models", "sample_spec"], "is not in"),
    ([], "no models to import"),
    (["--as", "flagship"], "cannot read --as"),
    (["--models", "gpt-4o-mini", "--as", "gpt-4o-mini=azure/gpt-4o"], "named twice"),
])
def test_unknown_or_ambiguous_names_are_clear_errors(cli, litellm, args, message):
    result = cli("prices", "import-litellm", litellm, "--as-of", "2026-11-16", *args)
    assert result.code == 2 and message in result.err, result.err


def test_unreadable_file_and_bad_date(cli, litellm, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = cli("prices", "import-litellm", broken, "--as-of", "2026-11-16", "--models", "x")
    assert result.code == 2 and "is not JSON" in result.err
    result = cli("prices", "import-litellm", litellm, "--as-of", "16.11.2026", "--models", "gpt-4o-mini")
    assert result.code == 2 and "as a date" in result.err


PACKAGED = Path(__file__).resolve().parent.parent / "data" / "price-sheets" / "litellm-1.110.2" / \
    "model_prices_and_context_window.json"


@pytest.fixture(scope="module")
def packaged():
    """Claude, Gemini, Grok and GPT models of the packaged LiteLLM 1.110.2 price file, imported once."""
    from simulator.importers.litellm_prices import import_litellm  # noqa: PLC0415

    sheet, keys, unmapped = import_litellm(PACKAGED, dt.date(2026, 11, 30),
                                           ["claude-sonnet-4-5", "gemini-2.5-pro", "xai/grok-4.20", "gpt-5.4",
                                            "dashscope/qwen-plus-2025-07-28"])
    return sheet["models"], unmapped


def test_claude_cache_writes_and_batch_prices_from_the_packaged_file(packaged):
    """claude-sonnet-4-5: cache_creation_input_token_cost 3.75e-06 (5-minute write, 1.25 x input) and its
    _above_1hr 6e-06 (2 x input); the _batches keys are absolute batch prices, the cache reads' discount
    (0.15 of 0.3) written apart from the input's (1.5 of 3)."""
    models, unmapped = packaged
    (claude,) = models["claude-sonnet-4-5"]
    assert (claude["input"], claude["cached_input"], claude["cache_write_input"], claude["cache_write_1h_input"],
            claude["output"]) == (3.0, 0.3, 3.75, 6.0, 15.0)
    assert claude["batch"] == {"input": 1.5, "cached_input": 0.15, "cache_write_input": 1.875, "output": 7.5}
    assert unmapped["claude-sonnet-4-5"] == ["search_context_cost_per_query"]


def test_gemini_and_gpt_tiers_per_service_tier(packaged):
    """gemini-2.5-pro above 200k: 2.5 / 0.25 / 15; priority 2.25 / 18 and above 200k 4.5 / 27 (combined
    _above_200k_tokens_priority keys); gpt-5.4 above 272k: 5 / 0.5 / 22.5, batch above 272k 2.5 / 11.25."""
    models, _ = packaged
    (gemini,) = models["gemini-2.5-pro"]
    assert gemini["tiers"] == [{"above_input_tokens": 200_000, "input": 2.5, "cached_input": 0.25,
                                "cache_write_input": 0.25, "output": 15.0}]
    assert (gemini["priority"]["input"], gemini["priority"]["output"]) == (2.25, 18.0)
    assert gemini["priority"]["tiers"] == [{"above_input_tokens": 200_000, "input": 4.5, "cached_input": 0.45,
                                            "output": 27.0}]
    assert (gemini["flex"]["input"], gemini["batch"]["input"]) == (0.625, 0.625)
    (gpt,) = models["gpt-5.4"]
    assert gpt["tiers"] == [{"above_input_tokens": 272_000, "input": 5.0, "cached_input": 0.5, "output": 22.5}]
    assert gpt["batch"]["tiers"] == [{"above_input_tokens": 272_000, "input": 2.5, "cached_input": 0.25,
                                      "output": 11.25}]
    assert gpt["priority"] == {"input": 5.0, "cached_input": 0.5, "output": 30.0}


def test_grok_tiers_and_tiered_pricing_lists_with_reasoning(packaged):
    """xai/grok-4.20 above 200k: 2.5 / 0.4 / 5 (batch 2 / 0.32 / 4). qwen-plus's tiered_pricing ranges
    [0, 256000] and [256000, 1000000]: the base 0.4 / 1.2 with reasoning 4, a tier above 256k 1.2 / 3.6
    with reasoning 12."""
    models, unmapped = packaged
    (grok,) = models["xai/grok-4.20"]
    assert grok["tiers"] == [{"above_input_tokens": 200_000, "input": 2.5, "cached_input": 0.4, "output": 5.0}]
    assert grok["batch"]["tiers"][0]["input"] == 2.0
    (qwen,) = models["dashscope/qwen-plus-2025-07-28"]
    assert (qwen["input"], qwen["output"], qwen["reasoning_output"]) == (0.4, 1.2, 4.0)
    assert qwen["tiers"] == [{"above_input_tokens": 256_000, "input": 1.2, "output": 3.6, "reasoning_output": 12.0}]
    assert unmapped["xai/grok-4.20"] == ["input_cost_per_image_token"]


def test_every_suffix_of_the_packaged_file_maps_or_is_listed(cli, tmp_path):
    """Every _above_<N>k_tokens suffix of the file parses (32k to 512k all occur); the command lists the
    keys it could not map per model."""
    from simulator.importers.litellm_prices import KEY, read_litellm  # noqa: PLC0415

    thresholds = {int(match["thousands"]) for values in read_litellm(PACKAGED).values() for key in values
                  if (match := KEY.fullmatch(key)) and match["thousands"]}
    assert {32, 128, 200, 256, 272, 512} <= thresholds
    out = tmp_path / "sheet.yaml"
    result = cli("prices", "import-litellm", PACKAGED, "--as-of", "2026-11-30", "--models", "gemini-2.5-pro", "-o", out)
    assert result.code == 0, result.err
    assert "gemini-2.5-pro: not mapped: google_maps_grounding_cost_per_query, search_context_cost_per_query" in result.out
    assert "litellm-1.110.2/model_prices_and_context_window.json" in out.read_text()
    assert load_prices(out).models["gemini-2.5-pro"][0].priority.tiers[0].above_input_tokens == 200_000


PRICED = {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
# Every character PyYAML ends a comment at: a key holding one would start a YAML line of its own.
LINE_BREAKS = ["\n", "\r", "\x85", "\u2028", "\u2029"]


def _header(text: str) -> list[str]:
    return text[:text.index("\nmodels:")].split("\n")


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=repr)
def test_a_line_break_in_a_key_a_price_key_or_the_file_name_stays_inside_the_header_comment(cli, tmp_path,
                                                                                          line_break):
    """A LiteLLM key, a price key left unmapped and the file's own name, each holding a line break and a
    top-level `discount` after it: the header shows them escaped and the sheet loads back with no discount."""
    hostile = f"m2{line_break}discount: 0.9 #"
    source = tmp_path / f"prices{line_break}discount: 0.8 #.json"
    source.write_text(json.dumps({"m": {**PRICED, f"x_cost{line_break}discount: 0.7": 1}, hostile: PRICED}))
    out = tmp_path / "sheet.yaml"
    result = cli("prices", "import-litellm", source, "--as-of", "2026-10-01", "--models", "m", "--as", f"m2={hostile}",
                 "-o", out)
    assert result.code == 0, result.err
    text = out.read_text(encoding="utf-8")
    assert all(line.startswith("#") for line in _header(text)), text
    assert visible(hostile) in text and visible(str(source)) in text and visible(f"x_cost{line_break}") in text
    sheet = load_prices(out)
    assert sheet.discount == 0 and set(sheet.models) == {"m", "m2"}
    assert all(entry.discount is None and (entry.input, entry.output) == (1.0, 2.0)
               for entries in sheet.models.values() for entry in entries)


def test_a_lone_surrogate_in_a_key_is_shown_escaped(cli, tmp_path):
    """JSON's "\\ud800" reads as a lone surrogate, which no UTF-8 file can hold: the header shows it escaped
    instead of the command failing as it writes."""
    source = tmp_path / "prices.json"
    source.write_text('{"s\\ud800": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}')
    out = tmp_path / "sheet.yaml"
    result = cli("prices", "import-litellm", source, "--as-of", "2026-10-01", "--as", "s=s\ud800", "-o", out)
    assert result.code == 0, result.err
    assert "#   s: s\\ud800" in out.read_text(encoding="utf-8")
    assert load_prices(out).models["s"][0].output == 2.0


@pytest.mark.parametrize(("args", "option"), [
    (["--models", "m2\ndiscount: 0.9"], "--models"),
    (["--as", "m\u200b=m"], "--as"),
    (["--as", "\ufeffm=m"], "--as"),
])
def test_a_sheet_model_name_that_is_not_printable_is_refused(cli, tmp_path, args, option):
    """The sheet's own model names (from --models or the name side of --as) must be printable; the fix
    names --as, which gives a hostile key a printable name."""
    source = tmp_path / "prices.json"
    source.write_text(json.dumps({"m": PRICED, "m2\ndiscount: 0.9": PRICED}))
    out = tmp_path / "sheet.yaml"
    result = cli("prices", "import-litellm", source, "--as-of", "2026-10-01", *args, "-o", out)
    assert result.code == 2, result.err
    assert "control or invisible character" in result.err and f"where: {option}" in result.err
    assert "fix: give it a printable name with --as NAME=KEY (and leave the key out of --models)" in result.err
    assert not out.exists()
    # as the fix says: the key left out of --models and named with --as imports
    named = cli("prices", "import-litellm", source, "--as-of", "2026-10-01", "--as", "m2=m2\ndiscount: 0.9",
                "-o", out)
    assert named.code == 0, named.err
    assert list(yaml.safe_load(out.read_text())["models"]) == ["m2"]


@pytest.mark.parametrize(("models", "renames", "problem"), [
    ("m", ["m2=m2\ndiscount: 0.9 #"], "loads back to other prices than those imported"),
    ("m2\ndiscount: 0.9", [], "does not load back: not valid YAML"),
])
@pytest.mark.parametrize("to_stdout", [False, True], ids=["file", "stdout"])
def test_a_sheet_that_would_not_load_back_as_imported_is_never_written(cli, tmp_path, monkeypatch, models, renames,
                                                                      problem, to_stdout):
    """With the header's escaping undone (and with it the name check), the tester's two sheets come back:
    one a top-level `discount: 0.9`, one not YAML. Loading the sheet back before writing refuses both, and
    neither the output nor a temporary file beside it is left, nor anything printed."""
    from simulator.importers import litellm_prices  # noqa: PLC0415

    monkeypatch.setattr(litellm_prices, "visible", lambda text: text)
    source = tmp_path / "prices.json"
    source.write_text(json.dumps({"m": PRICED, "m2\ndiscount: 0.9 #": PRICED, "m2\ndiscount: 0.9": PRICED}))
    out = tmp_path / "sheets" / "sheet.yaml"
    args = [] if to_stdout else ["-o", out]
    result = cli("prices", "import-litellm", source, "--as-of", "2026-10-01", "--models", models,
                 *[arg for rename in renames for arg in ("--as", rename)], *args)
    assert result.code == 2 and problem in result.err and "nothing was written" in result.err, result.err
    assert f"where: {'stdout' if to_stdout else out}" in result.err
    assert result.out == "" and not out.parent.exists()


@pytest.mark.parametrize("change", [
    lambda text: text + "discount: 0.5\n",
    lambda text: text.replace("output: 2.0", "output: 2.5"),
    lambda text: text.replace("  m:", "  n:"),
], ids=["a key added", "a price changed", "a model renamed"])
def test_the_load_back_check_refuses_any_difference_from_the_imported_prices(litellm, change):
    from simulator.importers.litellm_prices import check_loads_back, import_litellm, render_sheet  # noqa: PLC0415

    source = litellm.with_name("prices.json")
    source.write_text(json.dumps({"m": PRICED}))
    sheet, keys, unmapped = import_litellm(source, dt.date(2026, 10, 1), ["m"])
    text = render_sheet(sheet, source, dt.date(2026, 10, 1), keys, unmapped)
    check_loads_back(text, sheet, "sheet.yaml")  # as rendered, it loads back
    with pytest.raises(RoutesimError, match="other prices than those imported"):
        check_loads_back(change(text), sheet, "sheet.yaml")


@pytest.mark.parametrize("given", ["prices.json", "v1/prices.json", "v1/../prices.json"])
def test_the_header_names_the_file_as_given(cli, tmp_path, monkeypatch, given):
    """Named as typed: a file of the current folder is not '/prices.json', and a relative path stays
    relative (an absolute one would carry the importer's home folder into a shared sheet)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v1").mkdir()
    for path in (tmp_path / "prices.json", tmp_path / "v1" / "prices.json"):
        path.write_text(json.dumps({"m": PRICED}))
    result = cli("prices", "import-litellm", given, "--as-of", "2026-10-01", "--models", "m")
    assert result.code == 0, result.err
    assert result.out.startswith(f"# Imported from LiteLLM's {given} by ")


@pytest.mark.parametrize("content", [None, "", " \n"], ids=["/dev/null", "empty", "blank"])
def test_an_empty_file_is_named_as_given(cli, tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    given = "/dev/null" if content is None else "empty.json"
    if content is not None:
        Path(given).write_text(content)
    result = cli("prices", "import-litellm", given, "--as-of", "2026-10-01", "--models", "m")
    assert result.code == 2, result.err
    assert f"{given} is not JSON: it is empty" in result.err
    assert f"where: {given}" in result.err and "fix: pass LiteLLM's" in result.err


def test_a_file_that_is_not_json_is_named_as_given(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("v1").mkdir()
    Path("v1/prices.json").write_text("{not json")
    result = cli("prices", "import-litellm", "v1/prices.json", "--as-of", "2026-10-01", "--models", "m")
    assert result.code == 2 and "v1/prices.json is not JSON: Expecting" in result.err, result.err
    result = cli("prices", "import-litellm", "v1/prices.json/..", "--as-of", "2026-10-01", "--models", "m")
    assert result.code == 2 and "cannot read v1/prices.json/..:" in result.err, result.err


def test_a_suggestion_shows_a_key_with_one_backslash_per_escape(cli, tmp_path):
    source = tmp_path / "prices.json"
    source.write_text(json.dumps({"gpt: evil\n  x": PRICED}))
    result = cli("prices", "import-litellm", source, "--as-of", "2026-10-01", "--models", "x")
    assert result.code == 2 and "Did you mean 'gpt: evil\\u000a  x'?" in result.err, result.err
