"""`routesim prices import-litellm`: LiteLLM's per-token prices as a dated sheet, converted by hand."""

from __future__ import annotations

import json

import pytest
import yaml

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
    6e-07 = 0.6. The batch price is not imported. claude-x is the one key ending in '/claude-x'."""
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
