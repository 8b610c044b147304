"""Tests of the synthetic support-week generator: determinism, the data contract and the simulated behaviour."""

from __future__ import annotations

import datetime
from pathlib import Path

import polars as pl
import pytest
import yaml

from simulator.core.contract import (
    OUTCOMES_FILE,
    TRAFFIC_FILE,
    validate_folder,
    validate_frames,
)
from simulator.core.errors import RoutesimError
from simulator.datasets.generate import (
    DEFAULT_START,
    MODELS,
    PRICES,
    SLICE_NAMES,
    generate_week,
    write_week,
)

REPO = Path(__file__).resolve().parents[1]
REQUESTS = 20_000
EASY = ("order_status", "faq", "one_line_rewrite", "definition_lookup")
HARD = ("refund_dispute", "renewal_email", "contract_analysis", "research_synthesis")
SHIFT_DAY = DEFAULT_START + datetime.timedelta(days=5)


def _week(requests: int, **kwargs) -> tuple[pl.DataFrame, pl.DataFrame]:
    chunks = list(generate_week(requests, **kwargs))
    return pl.concat([t for t, _ in chunks]), pl.concat([o for _, o in chunks])


@pytest.fixture(scope="module")
def shifted() -> tuple[pl.DataFrame, pl.DataFrame]:
    return _week(REQUESTS)


@pytest.fixture(scope="module")
def stationary() -> tuple[pl.DataFrame, pl.DataFrame]:
    return _week(REQUESTS, mix_shift=False)


def _answers(week: tuple[pl.DataFrame, pl.DataFrame]) -> pl.DataFrame:
    """First answers joined to their request, with the request's day."""
    traffic, outcomes = week
    return (outcomes.filter(pl.col("sample") == 0)
            .join(traffic.drop("input_tokens"), on="request_id")
            .with_columns(day=pl.col("ts").dt.date()))


def _escalation(answers: pl.DataFrame, late: bool) -> float:
    """Share of small answers a 'confidence >= 0.7' cascade would escalate, before or after the shift."""
    small = answers.filter(pl.col("model") == "small")
    days = small.filter(pl.col("day") >= SHIFT_DAY) if late else small.filter(
        pl.col("day") < DEFAULT_START + datetime.timedelta(days=4))
    return days.select((pl.col("confidence") < 0.7).mean()).item()


def test_same_arguments_give_identical_files(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_week(first, 5_000, 7, 11)
    write_week(second, 5_000, 7, 11)
    write_week(other, 5_000, 7, 12)
    for name in (TRAFFIC_FILE, OUTCOMES_FILE):
        assert (first / name).read_bytes() == (second / name).read_bytes()
        assert (first / name).read_bytes() != (other / name).read_bytes()


def test_chunks_are_deterministic_and_cover_the_requests_in_order() -> None:
    chunks = list(generate_week(10_000, chunk_size=3_000, seed=5))
    again = list(generate_week(10_000, chunk_size=3_000, seed=5))
    assert [t.height for t, _ in chunks] == [3_000, 3_000, 3_000, 1_000]
    for (traffic, outcomes), (traffic_again, outcomes_again) in zip(chunks, again, strict=True):
        assert traffic.equals(traffic_again) and outcomes.equals(outcomes_again)
        assert set(outcomes["request_id"]) == set(traffic["request_id"])
    traffic = pl.concat([t for t, _ in chunks])
    assert traffic["request_id"].to_list() == [f"req-{i:08d}" for i in range(1, 10_001)]
    assert traffic["ts"].is_sorted()


def test_chunk_size_changes_nothing_and_a_requests_draws_are_its_own() -> None:
    # Every draw but the arrival times is keyed by (seed, purpose, request id): chunking is memory only.
    one = _week(2_000, seed=9, chunk_size=2_000)
    many = _week(2_000, seed=9, chunk_size=300)
    assert one[0].equals(many[0]) and one[1].equals(many[1])
    # In a week one request longer, req-00000001 keeps its draws: everything but its arrival time and the
    # latencies, which follow the load at that time (both on the first day, before any price or mix change).
    bigger = _week(2_001, seed=9)
    for frame, other in zip(one, bigger):
        first = frame.filter(pl.col("request_id") == "req-00000001")
        again = other.filter(pl.col("request_id") == "req-00000001")
        assert first.drop("ts", "latency_ms", "ttft_ms", strict=False).equals(
            again.drop("ts", "latency_ms", "ttft_ms", strict=False))


def test_output_meets_the_contract(shifted, tmp_path: Path) -> None:
    traffic, outcomes = shifted
    report = validate_frames(traffic, outcomes)
    assert report.ok, report.problems
    assert traffic.schema["ts"] == pl.Datetime("us", "UTC")
    for column in ("input_tokens",):
        assert traffic.schema[column] == pl.Int64
    for column in ("sample", "input_tokens", "cached_input_tokens", "output_tokens"):
        assert outcomes.schema[column] == pl.Int64
    for column in ("latency_ms", "ttft_ms", "score", "confidence", "checker_score", "cost_usd"):
        assert outcomes.schema[column] == pl.Float64
    assert outcomes.schema["passed"] == pl.Boolean and outcomes.schema["hard_check_ok"] == pl.Boolean
    assert {"feature", "customer_tier"} <= set(traffic.columns)
    assert set(traffic["customer_tier"]) == {"free", "pro", "enterprise"}
    assert {"chat", "email_assist", "agent_tools", "search"} <= set(traffic["feature"])
    # Only the cache detail may be missing, and only now and then.
    nulls = outcomes.null_count().row(0, named=True)
    assert {name for name, count in nulls.items() if count} == {"cached_input_tokens"}
    assert 0 < nulls["cached_input_tokens"] / outcomes.height < 0.05

    write_week(tmp_path, 2_000)
    assert validate_folder(tmp_path).ok
    written = pl.read_parquet(tmp_path / TRAFFIC_FILE)
    assert written.schema["ts"] == pl.Datetime("us", "UTC")


def test_every_model_answers_every_request_and_small_and_flagship_sometimes_twice(shifted) -> None:
    traffic, outcomes = shifted
    first = outcomes.filter(pl.col("sample") == 0)
    assert first.height == traffic.height * len(MODELS)
    assert set(first["model"]) == set(MODELS)
    repeats = outcomes.filter(pl.col("sample") == 1)
    assert set(repeats["model"]) == {"small", "flagship"}
    assert outcomes["sample"].max() == 1
    by_model = repeats.group_by("model").agg(pl.col("request_id").sort())
    small, flagship = (by_model.filter(pl.col("model") == m)["request_id"].item().to_list()
                       for m in ("small", "flagship"))
    assert small == flagship
    assert 0.08 < len(small) / traffic.height < 0.12
    answered = outcomes.join(traffic.select("request_id", request_tokens="input_tokens"), on="request_id")
    assert (answered["input_tokens"] == answered["request_tokens"]).all()


def test_slices_differ_in_share_and_length(shifted) -> None:
    traffic, _ = shifted
    assert len(SLICE_NAMES) >= 8
    assert set(traffic["slice"]) == set(EASY + HARD)
    early = traffic.filter(pl.col("ts").dt.date() < SHIFT_DAY)
    easy_share = early.select(pl.col("slice").is_in(EASY).mean()).item()
    assert 0.62 < easy_share < 0.78
    lengths = traffic.group_by("slice").agg(median=pl.col("input_tokens").median(),
                                            over_6000=(pl.col("input_tokens") > 6000).mean())
    median = dict(zip(lengths["slice"], lengths["median"], strict=True))
    over_6000 = dict(zip(lengths["slice"], lengths["over_6000"], strict=True))
    assert median["order_status"] < 600
    for long in ("contract_analysis", "research_synthesis"):
        assert median[long] > 3000 and over_6000[long] > 0.2
    assert max(median[s] for s in EASY) < min(median[s] for s in HARD)


def test_pass_rates_follow_model_tier_and_slice_difficulty(shifted) -> None:
    answers = _answers(shifted)
    rate = answers.group_by("model").agg(pl.col("passed").mean())
    rate = dict(zip(rate["model"], rate["passed"], strict=True))
    assert rate["small"] < rate["medium"] < rate["large"] < rate["flagship"]
    by_slice = answers.group_by("model", "slice").agg(pl.col("passed").mean())
    slice_rate = {(m, s): p for m, s, p in by_slice.iter_rows()}
    assert slice_rate["small", "order_status"] > 0.9
    assert slice_rate["small", "contract_analysis"] < 0.3
    assert slice_rate["flagship", "contract_analysis"] > 0.5
    # Verdicts are correlated through the request: what the flagship fails, small rarely passes.
    pairs = (answers.filter(pl.col("model") == "small").select("request_id", small="passed")
             .join(answers.filter(pl.col("model") == "flagship").select("request_id", flagship="passed"),
                   on="request_id"))
    assert pairs.filter(~pl.col("flagship"))["small"].mean() < 0.5 * rate["small"]


def test_hard_check_failures(shifted) -> None:
    answers = _answers(shifted)
    assert not answers.filter(pl.col("passed") & ~pl.col("hard_check_ok")).height
    failing = answers.group_by("model").agg((~pl.col("hard_check_ok")).mean().alias("rate"))
    failing = dict(zip(failing["model"], failing["rate"], strict=True))
    assert failing["small"] > 2 * failing["flagship"]
    assert 0.03 < failing["small"] < 0.1
    by_feature = answers.group_by("feature").agg((~pl.col("hard_check_ok")).mean().alias("rate"))
    by_feature = dict(zip(by_feature["feature"], by_feature["rate"], strict=True))
    assert by_feature["agent_tools"] > 1.5 * by_feature["chat"]


def test_confidence_and_checker_are_informative_but_imperfect(shifted) -> None:
    answers = _answers(shifted)
    means = answers.group_by("passed").agg(pl.col("confidence").mean(), pl.col("checker_score").mean())
    passed, failed = (means.filter(pl.col("passed") == verdict).row(0, named=True) for verdict in (True, False))
    assert passed["confidence"] > failed["confidence"] + 0.15
    assert passed["checker_score"] > failed["checker_score"] + 0.15
    small_failures = answers.filter((pl.col("model") == "small") & ~pl.col("passed"))
    confident = small_failures.select((pl.col("confidence") >= 0.7).mean()).item()
    assert 0.05 < confident < 0.6  # the threshold catches many failures, not all
    escalated = _escalation(answers, late=False)
    assert 0.2 <= escalated <= 0.35


def test_mix_shift_makes_the_last_days_harder(shifted, stationary) -> None:
    with_shift, without_shift = _answers(shifted), _answers(stationary)
    assert _escalation(with_shift, late=True) > _escalation(with_shift, late=False) + 0.1
    assert abs(_escalation(without_shift, late=True) - _escalation(without_shift, late=False)) < 0.04

    def hard_share(traffic: pl.DataFrame, late: bool) -> float:
        day = pl.col("ts").dt.date()
        days = traffic.filter(day >= SHIFT_DAY if late else day < DEFAULT_START + datetime.timedelta(days=4))
        return days.select(pl.col("slice").is_in(HARD).mean()).item()

    assert hard_share(shifted[0], late=True) > hard_share(shifted[0], late=False) + 0.1
    assert abs(hard_share(stationary[0], late=True) - hard_share(stationary[0], late=False)) < 0.04
    # Both variants draw the same numbers, so they agree until the shift begins.
    before = pl.col("ts").dt.date() < SHIFT_DAY
    assert shifted[0].filter(before).equals(stationary[0].filter(before))


def test_load_follows_the_day_and_the_week(shifted) -> None:
    traffic, _ = shifted
    hours = traffic.group_by(pl.col("ts").dt.hour().alias("hour")).len()
    count = dict(zip(hours["hour"], hours["len"], strict=True))
    assert count[14] > 3 * count[3]
    days = traffic.group_by(pl.col("ts").dt.weekday().alias("weekday")).len()
    per_day = dict(zip(days["weekday"], days["len"], strict=True))
    assert max(per_day[6], per_day[7]) < 0.75 * min(per_day[d] for d in range(1, 6))
    assert traffic["ts"].min() >= datetime.datetime(2026, 11, 16, tzinfo=datetime.UTC)
    assert traffic["ts"].max() < datetime.datetime(2026, 11, 23, tzinfo=datetime.UTC)


def test_latency_grows_with_model_size(shifted) -> None:
    _, outcomes = shifted
    assert (outcomes["latency_ms"] >= outcomes["ttft_ms"]).all()
    medians = outcomes.group_by("model").agg(pl.col("ttft_ms").median(), pl.col("latency_ms").median())
    ttft = dict(zip(medians["model"], medians["ttft_ms"], strict=True))
    latency = dict(zip(medians["model"], medians["latency_ms"], strict=True))
    assert [ttft[m] for m in MODELS] == sorted(ttft[m] for m in MODELS)
    assert [latency[m] for m in MODELS] == sorted(latency[m] for m in MODELS)


def test_prices_mirror_the_price_sheet() -> None:
    sheet = yaml.safe_load((REPO / "data" / "prices" / "support.yaml").read_text())["models"]
    assert set(sheet) == set(PRICES) == set(MODELS)
    for model, entries in sheet.items():
        expected = tuple((e["effective_from"], e["input"], e.get("cached_input", e["input"]), e["output"])
                         for e in entries)
        assert PRICES[model] == expected
        assert all(not e.get("per_request") for e in entries)


def test_cost_is_billed_at_the_price_in_force(shifted) -> None:
    traffic, outcomes = shifted
    rows = outcomes.filter(pl.col("cached_input_tokens").is_not_null()).join(
        traffic.select("request_id", "ts"), on="request_id")
    for model, entries in PRICES.items():
        for index, (effective_from, input_price, cached_price, output_price) in enumerate(entries):
            until = entries[index + 1][0] if index + 1 < len(entries) else datetime.date(2100, 1, 1)
            billed = rows.filter((pl.col("model") == model) & pl.col("ts").dt.date().is_between(
                effective_from, until, closed="left"))
            assert billed.height
            expected = ((billed["input_tokens"] - billed["cached_input_tokens"]) * input_price
                        + billed["cached_input_tokens"] * cached_price
                        + billed["output_tokens"] * output_price) / 1e6
            assert (billed["cost_usd"] - expected).abs().max() < 1e-12
    cached = rows.filter(pl.col("cached_input_tokens") > 0)
    assert cached.height > rows.height / 3
    assert (cached["cached_input_tokens"] <= cached["input_tokens"]).all()


def test_graders_follow_the_slice(shifted) -> None:
    answers = _answers(shifted)
    graders = answers.group_by("slice").agg(pl.col("grader").unique().sort())
    graders = {s: set(g) for s, g in graders.iter_rows()}
    assert graders["order_status"] == graders["definition_lookup"] == {"deterministic"}
    assert graders["contract_analysis"] == {"llm_judge", "human"}
    assert all(graders[s] == {"llm_judge"} for s in ("faq", "refund_dispute", "research_synthesis"))
    deterministic = answers.filter(pl.col("grader") == "deterministic")
    assert (deterministic["score"] == deterministic["passed"].cast(pl.Float64)).all()


def test_write_week_replaces_files_only_when_complete(tmp_path: Path) -> None:
    seen: list[int] = []
    write_week(tmp_path, 5_000, progress=seen.append)
    assert seen == [5_000]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([TRAFFIC_FILE, OUTCOMES_FILE])
    before = {name: (tmp_path / name).read_bytes() for name in (TRAFFIC_FILE, OUTCOMES_FILE)}

    def fail(written: int) -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_week(tmp_path, 6_000, seed=3, progress=fail)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="interrupted"):
        write_week(fresh, 5_000, progress=fail)
    assert list(fresh.iterdir()) == []


@pytest.mark.parametrize("arguments", [{"requests": 0}, {"requests": 10, "days": 0},
                                       {"requests": 10, "seed": -1}])
def test_rejects_impossible_arguments(arguments: dict[str, int]) -> None:
    with pytest.raises(RoutesimError):
        next(generate_week(**arguments))
