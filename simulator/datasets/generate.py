"""A seeded generator of a synthetic week of support-bot traffic, in the data contract.

The simulated product is a customer-support assistant. Every logged request was answered by each of four
candidate models (`small`, `medium`, `large`, `flagship`) so that any routing rule, cascade or retry policy
can be replayed offline. Nothing here comes from real logs; the numbers are chosen to look plausible and to
make routing decisions interesting.

Modelling assumptions, each a deliberate simplification:

- Arrivals follow a daily cycle in UTC: a European peak late morning, a larger American peak in the
  afternoon, a night trough, and weekends at roughly half the weekday load.
- Each request belongs to one of eight slices (request types). A slice fixes the typical input and output
  length, the size of the cacheable prompt prefix, how hard it is, which product feature it arrives through,
  which customer tiers send it and how it is graded. Easy slices make up about 70% of the traffic.
- Quality follows a latent-ability model. A request has a latent difficulty (slice base + request noise);
  a model has an ability; one call passes when ability - difficulty + call noise > 0 and its hard check
  (well-formed output, tool call worked) succeeds. Because the request difficulty is shared by all models,
  their verdicts are correlated: a request the flagship fails is one the small model rarely passes.
- A model's `confidence` and a cheap checker's `checker_score` are noisy monotone readings of the same
  margin, so they are informative but imperfect; small models are the more over-confident ones.
- Latency is time to first token (grows with model size, input length and load) plus output tokens times
  a per-token time, both with lognormal noise.
- Cost is what the call was billed when it ran, from `PRICES`, which mirrors data/prices/support.yaml
  (including the flagship's mid-week price cut).
- A share of the requests are turns of multi-turn conversations (`session_id`, `turn`; SESSION_SHARE):
  the multi-turn requests among each block of a few consecutive arrivals form one conversation. A turn's
  slice and answers are drawn as any request's: turns do not depend on each other.
- Every answer carries an `answer_key` (a hash of its normalised answer): the correct answers to a request
  agree, and a wrong one is often the request's one common wrong answer (COMMON_WRONG_SHARE), so models'
  answers agree more often when they are right.
- With `mix_shift`, a new enterprise workload goes live on day 5 (Saturday 2026-11-21 for the default
  start): the mix moves towards long, tangled slices and requests get harder, so cascades escalate more.
  Without it the mix is stationary and only the load follows the daily cycle. Both variants draw the same
  random numbers, so they agree exactly before the shift begins.

Output is a pure function of the arguments. The arrival times are drawn up front from one seeded stream
(8 bytes per request; they decide the request ids, which number the requests in time order). Every other
draw is keyed (simulator.core.draws): a function of (seed, purpose, request id), and for an answer of the
purpose labelled with its model and sample. So a request's slice, tokens, difficulty and answers do not
depend on the other requests, the chunk size or the order the chunks are made in; chunks are made one at
a time and only one chunk's rows are ever held.
"""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from simulator.core.contract import OUTCOMES_FILE, TRAFFIC_FILE
from simulator.core.draws import (
    key_hashes,
    splitmix64,
    keyed_bits,
    keyed_uniform,
    to_categorical,
    to_logistic,
    to_normal,
    to_unit,
)
from simulator.core.errors import RoutesimError

DEFAULT_START = datetime.date(2026, 11, 16)  # a Monday

FEATURES = ("chat", "email_assist", "agent_tools", "search")
TIERS = ("free", "pro", "enterprise")
LANGUAGES = ("en", "de", "fr", "es")
GRADERS = ("deterministic", "llm_judge", "human")


@dataclass(frozen=True)
class SliceSpec:
    """One request type. Token counts are medians of lognormal distributions; weights need not sum to 1."""

    name: str
    share: float  # share of traffic before the mix shift
    shifted_share: float  # share of traffic once the mix shift is in full force
    difficulty: float  # mean latent difficulty, on the same logit scale as the model abilities
    difficulty_sd: float  # spread of the difficulty between requests of this slice
    prefix_tokens: int  # system prompt, policies and tool schemas: identical across requests, so cacheable
    content_tokens: float  # median of the request-specific part of the prompt
    content_sigma: float
    output_tokens: float  # median answer length of a model with verbosity 1
    output_sigma: float
    features: tuple[float, float, float, float]  # weights of FEATURES
    tiers: tuple[float, float, float]  # weights of TIERS
    grader: str  # how answers of this slice are graded
    human_share: float = 0.0  # part of the requests sent to human review instead


SLICES: tuple[SliceSpec, ...] = (
    # name, share, shifted_share, difficulty, difficulty_sd, prefix_tokens, content_tokens, content_sigma,
    # output_tokens, output_sigma, features (chat, email_assist, agent_tools, search),
    # tiers (free, pro, enterprise), grader.
    # Easy bulk: short, single-fact answers that a small model handles.
    SliceSpec("order_status", 0.26, 0.17, -4.5, 0.9, 320, 60, 0.5, 60, 0.4,
              (0.85, 0.0, 0.15, 0.0), (0.55, 0.35, 0.10), "deterministic"),
    SliceSpec("faq", 0.20, 0.14, -3.0, 1.0, 640, 260, 0.6, 150, 0.5,
              (0.7, 0.0, 0.0, 0.3), (0.50, 0.35, 0.15), "llm_judge"),
    SliceSpec("one_line_rewrite", 0.13, 0.09, -3.4, 0.9, 96, 40, 0.5, 40, 0.4,
              (0.4, 0.6, 0.0, 0.0), (0.45, 0.40, 0.15), "llm_judge"),
    SliceSpec("definition_lookup", 0.11, 0.08, -3.6, 1.0, 192, 50, 0.5, 80, 0.5,
              (0.5, 0.0, 0.0, 0.5), (0.50, 0.35, 0.15), "deterministic"),
    # Tail: long inputs, several sources or policies to reconcile.
    SliceSpec("refund_dispute", 0.10, 0.13, 0.6, 1.1, 1408, 700, 0.6, 350, 0.5,
              (0.6, 0.0, 0.4, 0.0), (0.30, 0.45, 0.25), "llm_judge"),
    SliceSpec("renewal_email", 0.08, 0.10, 0.9, 1.0, 896, 800, 0.6, 450, 0.4,
              (0.0, 1.0, 0.0, 0.0), (0.05, 0.40, 0.55), "llm_judge"),
    SliceSpec("contract_analysis", 0.06, 0.15, 1.9, 1.1, 1216, 4600, 0.45, 700, 0.5,
              (0.7, 0.0, 0.0, 0.3), (0.02, 0.28, 0.70), "llm_judge", human_share=0.15),
    SliceSpec("research_synthesis", 0.06, 0.14, 2.2, 1.1, 832, 5400, 0.5, 900, 0.5,
              (0.0, 0.0, 0.45, 0.55), (0.05, 0.35, 0.60), "llm_judge"),
)
SLICE_NAMES = tuple(spec.name for spec in SLICES)


@dataclass(frozen=True)
class ModelSpec:
    """One candidate model. Abilities are on the difficulty's logit scale; times are in milliseconds."""

    name: str
    ability: float
    long_context_penalty: float  # extra difficulty per doubling of the input beyond LONG_CONTEXT_TOKENS
    hard_check_failure: float  # share of malformed answers or failed tool calls, before the feature factor
    confidence_bias: float  # logit offset of the self-reported confidence: small models are over-confident
    verbosity: float  # answer length relative to the slice median
    ttft_ms: float  # median time to first token of a short prompt at night
    prefill_ms_per_token: float  # extra time to first token per uncached input token
    ms_per_output_token: float  # median time per generated token
    cache_hit_rate: float  # share of calls whose prompt prefix was served from the provider's cache


MODEL_SPECS: tuple[ModelSpec, ...] = (
    # name, ability, long_context_penalty, hard_check_failure, confidence_bias, verbosity, ttft_ms,
    # prefill_ms_per_token, ms_per_output_token, cache_hit_rate
    ModelSpec("small", 0.0, 0.60, 0.06, 1.05, 0.85, 250.0, 0.015, 6.0, 0.75),
    ModelSpec("medium", 1.3, 0.40, 0.04, 1.00, 1.00, 350.0, 0.030, 9.0, 0.70),
    ModelSpec("large", 2.4, 0.20, 0.02, 0.95, 1.15, 500.0, 0.060, 14.0, 0.65),
    ModelSpec("flagship", 3.3, 0.10, 0.01, 0.90, 1.25, 700.0, 0.100, 20.0, 0.60),
)
MODELS = tuple(spec.name for spec in MODEL_SPECS)

# USD per million tokens, as (effective_from, input, cached_input, output). Mirrors data/prices/support.yaml;
# keep the two in step. The generator records what a call cost when it ran, so the flagship's price cut on
# 2026-11-19 shows up in cost_usd from that day on.
PRICES: dict[str, tuple[tuple[date, float, float, float], ...]] = {
    "small": ((date(2026, 10, 1), 0.15, 0.075, 0.60),),
    "medium": ((date(2026, 10, 1), 0.40, 0.10, 1.60),),
    "large": ((date(2026, 10, 1), 1.25, 0.3125, 10.00),),
    "flagship": ((date(2026, 10, 1), 5.00, 2.50, 20.00), (date(2026, 11, 19), 3.00, 1.50, 15.00)),
}

# Models that answer a second time (sample 1) for a subset of requests, so retries can be replayed.
RESAMPLED_MODELS = ("small", "flagship")
RESAMPLE_SHARE = 0.10

# Per-call noise of the pass margin (logistic scale). Kept small against the spread of request difficulty,
# so that verdicts of different models on one request are strongly correlated.
CALL_NOISE = 0.6
# Inputs longer than this start to hurt smaller models more than bigger ones.
LONG_CONTEXT_TOKENS = 4000
# Agent tool calls fail far more often than plain text answers.
HARD_CHECK_FEATURE_FACTOR = {"chat": 0.75, "email_assist": 0.75, "agent_tools": 2.5, "search": 0.9}
# Answers in another language than English are a little harder for every model.
LANGUAGE_WEIGHTS = (0.72, 0.10, 0.08, 0.10)
LANGUAGE_DIFFICULTY = (0.0, 0.3, 0.3, 0.3)

# Reading the pass margin: gains and noise of the model's confidence and the checker (logit scale).
CONFIDENCE_GAIN = 0.55
CONFIDENCE_NOISE = 0.75
CHECKER_BIAS = 0.2
CHECKER_GAIN = 0.7
CHECKER_NOISE = 0.9
CHECKER_HARD_FAILURE_PENALTY = 2.5  # the checker spots most malformed answers
SCORE_GAIN = 1.3
HARD_FAILURE_SCORE_FACTOR = 0.2

# Logs whose usage block lacked the cache detail: cached_input_tokens is null there (cost is still known).
CACHE_UNREPORTED_SHARE = 0.02
CACHE_BLOCK_TOKENS = 64  # providers cache whole blocks of the prefix

# Latency noise (lognormal sigmas) and the slowdown at peak load.
TTFT_SIGMA = 0.35
TOKEN_TIME_SIGMA = 0.15
PEAK_SLOWDOWN = 0.25
CACHED_PREFILL_FACTOR = 0.2  # cached prefix tokens still cost a little prefill time

# Daily cycle in UTC hours: a European and an American peak over a night floor; lighter weekends.
NIGHT_FLOOR = 0.12
DAY_PEAKS = ((10.0, 2.5, 0.85), (16.5, 3.0, 1.0))  # (centre hour, width in hours, height)
WEEKEND_FACTOR = 0.55

# The mix shift begins at 00:00 UTC of this day (counted from the start) and reaches full force after the ramp.
MIX_SHIFT_DAY = 5
MIX_SHIFT_RAMP_HOURS = 12.0
MIX_SHIFT_DIFFICULTY = 0.5  # harder documents in the new workload, across all slices

# Conversations: a request is a turn of a multi-turn conversation with probability SESSION_SHARE; the
# turns of one conversation are those among each block of SESSION_BLOCK consecutive arrivals (global
# indices), numbered 0, 1, ... in arrival order. The rest are requests on their own (null session_id).
SESSION_SHARE = 0.35
SESSION_BLOCK = 6
# answer_key: a hash of the normalised answer. Every correct answer to a request shares one key; a wrong one
# is the request's common wrong answer with probability COMMON_WRONG_SHARE, else an answer of its own.
COMMON_WRONG_SHARE = 0.3
_WRONG_SALT = np.uint64(0x5851F42D4C957F2D)

_US_PER_MINUTE = 60_000_000
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 86_400_000_000
_TIMESTAMP_STREAM = 0
DRAW_PREFIX = "generate/"  # purposes of the keyed draws: "generate/slice", "generate/call_noise/small/0", ...


def _epoch_us(day: date) -> int:
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp()) * 1_000_000


def _diurnal_weight(hour: np.ndarray) -> np.ndarray:
    """Relative weekday load at a fractional UTC hour."""
    weight = np.full_like(hour, NIGHT_FLOOR, dtype=np.float64)
    for centre, width, height in DAY_PEAKS:
        distance = np.abs((hour - centre + 12.0) % 24.0 - 12.0)  # on the 24 h circle
        weight += height * np.exp(-0.5 * (distance / width) ** 2)
    return weight


_PEAK_WEIGHT = float(_diurnal_weight(np.arange(24 * 60) / 60.0).max())


def _is_weekend(start: date, day_index: np.ndarray) -> np.ndarray:
    return (start.weekday() + day_index) % 7 >= 5


def _load(ts_us: np.ndarray, start_us: int, start: date) -> np.ndarray:
    """Load at each timestamp relative to the weekday peak, in 0..1; drives the peak-hour slowdown."""
    offset = ts_us - start_us
    day_index = offset // _US_PER_DAY
    hour = (offset % _US_PER_DAY) / _US_PER_HOUR
    weight = _diurnal_weight(hour) * np.where(_is_weekend(start, day_index), WEEKEND_FACTOR, 1.0)
    return weight / _PEAK_WEIGHT


def _timestamps(requests: int, days: int, seed: int, start: date) -> np.ndarray:
    """All arrival times (µs since the epoch, sorted): a multinomial over minutes, uniform within each."""
    rng = np.random.default_rng([seed, _TIMESTAMP_STREAM, 0])
    minutes = np.arange(days * 24 * 60)
    weight = _diurnal_weight((minutes % (24 * 60) + 0.5) / 60.0)
    weight *= np.where(_is_weekend(start, minutes // (24 * 60)), WEEKEND_FACTOR, 1.0)
    counts = rng.multinomial(requests, weight / weight.sum())
    ts = np.repeat(minutes.astype(np.int64) * _US_PER_MINUTE, counts)
    ts += rng.integers(0, _US_PER_MINUTE, size=requests, dtype=np.int64)
    ts.sort()
    return ts + _epoch_us(start)


@dataclass(frozen=True)
class _Keyed:
    """Keyed draws for rows of one chunk: each a function of (seed, purpose, request id), and for answer rows
    of the purpose labelled with the answer's model and sample (`labels[codes[i]]`)."""

    seed: int
    hashes: np.ndarray  # key_hashes of each row's request id
    labels: tuple[str, ...] = ()
    codes: np.ndarray | None = None

    def bits(self, purpose: str) -> np.ndarray:
        if self.codes is None:
            return keyed_bits(self.seed, DRAW_PREFIX + purpose, self.hashes)
        return keyed_bits(self.seed, [f"{DRAW_PREFIX}{purpose}/{label}" for label in self.labels], self.hashes,
                          self.codes)

    def uniform(self, purpose: str) -> np.ndarray:
        return to_unit(self.bits(purpose))

    def normal(self, purpose: str) -> np.ndarray:
        return to_normal(self.bits(purpose))

    def categorical(self, purpose: str, weights, rows: np.ndarray | None = None) -> np.ndarray:
        return to_categorical(self.bits(purpose), np.asarray(weights, dtype=np.float64), rows)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _strings(names: tuple[str, ...], codes: np.ndarray, column: str) -> pl.Series:
    return pl.Series(column, names, dtype=pl.String).gather(codes)


def _prices_at(model_codes: np.ndarray, ts_us: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input, cached-input and output price (USD per token) in force for each call. Calls before a model's
    first entry (only possible with an early `start`) are billed at that first entry."""
    prices = np.zeros((3, len(model_codes)))
    for code, model in enumerate(MODELS):
        rows = model_codes == code
        for index, (effective_from, *per_million) in enumerate(PRICES[model]):
            in_force = rows if index == 0 else rows & (ts_us >= _epoch_us(effective_from))
            prices[:, in_force] = np.array(per_million)[:, None] / 1e6
    return prices[0], prices[1], prices[2]


def _mix_shift(ts_us: np.ndarray, start_us: int, mix_shift: bool) -> np.ndarray:
    """How far the mix shift has progressed at each timestamp, 0..1."""
    if not mix_shift:
        return np.zeros(len(ts_us))
    shift_start = start_us + MIX_SHIFT_DAY * _US_PER_DAY
    return np.clip((ts_us - shift_start) / (MIX_SHIFT_RAMP_HOURS * _US_PER_HOUR), 0.0, 1.0)


def _slice_values(field: str, slice_code: np.ndarray) -> np.ndarray:
    return np.array([getattr(spec, field) for spec in SLICES])[slice_code]


def _model_values(field: str, model_code: np.ndarray) -> np.ndarray:
    return np.array([getattr(spec, field) for spec in MODEL_SPECS])[model_code]


@dataclass(frozen=True)
class _Requests:
    """Per-request draws of one chunk; `difficulty` is latent and never written out."""

    ts_us: np.ndarray
    slice_code: np.ndarray
    feature: np.ndarray
    tier: np.ndarray
    language: np.ndarray
    prefix_tokens: np.ndarray
    input_tokens: np.ndarray
    difficulty: np.ndarray
    grader: np.ndarray
    resampled: np.ndarray


def _draw_requests(draw: _Keyed, ts_us: np.ndarray, start_us: int, mix_shift: bool) -> _Requests:
    shift = _mix_shift(ts_us, start_us, mix_shift)
    # Draw from both mixes whatever the shift, so both variants draw the same numbers.
    base_slice = draw.categorical("slice", [s.share for s in SLICES])
    shifted_slice = draw.categorical("shifted_slice", [s.shifted_share for s in SLICES])
    slice_code = np.where(draw.uniform("shift") < shift, shifted_slice, base_slice)

    feature = draw.categorical("feature", [s.features for s in SLICES], slice_code)
    tier = draw.categorical("tier", [s.tiers for s in SLICES], slice_code)
    language = draw.categorical("language", LANGUAGE_WEIGHTS)

    prefix = _slice_values("prefix_tokens", slice_code)
    content = _slice_values("content_tokens", slice_code) * np.exp(
        _slice_values("content_sigma", slice_code) * draw.normal("content"))
    input_tokens = prefix + np.rint(content).astype(np.int64)

    difficulty = (_slice_values("difficulty", slice_code)
                  + _slice_values("difficulty_sd", slice_code) * draw.normal("difficulty")
                  + np.array(LANGUAGE_DIFFICULTY)[language]
                  + MIX_SHIFT_DIFFICULTY * shift)

    grader = np.array([GRADERS.index(s.grader) for s in SLICES])[slice_code]
    grader = np.where(draw.uniform("human_review") < _slice_values("human_share", slice_code),
                      GRADERS.index("human"), grader)
    resampled = draw.uniform("resampled") < RESAMPLE_SHARE
    return _Requests(ts_us, slice_code, feature, tier, language, prefix, input_tokens, difficulty, grader,
                     resampled)


def _answer_layout(resampled: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(request, model, sample) of every answer row: request by request, models in MODELS order, each
    model's samples together. Resampled requests get a second answer from each of RESAMPLED_MODELS."""
    plain = [(m, 0) for m in range(len(MODELS))]
    repeated = [(m, s) for m, name in enumerate(MODELS) for s in ((0, 1) if name in RESAMPLED_MODELS else (0,))]
    layouts = np.zeros((2, len(repeated), 2), dtype=np.int64)
    layouts[0, : len(plain)] = plain
    layouts[1] = repeated
    per_request = np.where(resampled, len(repeated), len(plain))
    request = np.repeat(np.arange(len(resampled)), per_request)
    position = np.arange(len(request)) - np.repeat(np.cumsum(per_request) - per_request, per_request)
    model, sample = layouts[resampled[request].astype(np.int64), position].T
    return request, model, sample


def _draw_answers(keys: _Keyed, req: _Requests, start_us: int, start: date, ids: pl.Series) -> pl.DataFrame:
    row_req, model_code, sample = _answer_layout(req.resampled)
    # Each answer's draws are keyed by its request's id, under purposes labelled "model/sample".
    draw = _Keyed(keys.seed, keys.hashes[row_req], tuple(f"{m}/{s}" for m in MODELS for s in (0, 1)),
                  model_code * 2 + sample)
    ts_us = req.ts_us[row_req]
    input_tokens = req.input_tokens[row_req]
    slice_code = req.slice_code[row_req]

    def per_model(field: str) -> np.ndarray:
        return _model_values(field, model_code)

    long_context = np.maximum(0.0, np.log2(input_tokens / LONG_CONTEXT_TOKENS))
    margin = (per_model("ability") - req.difficulty[row_req] - per_model("long_context_penalty") * long_context
              + to_logistic(draw.bits("call_noise"), CALL_NOISE))
    feature_factor = np.array([HARD_CHECK_FEATURE_FACTOR[f] for f in FEATURES])[req.feature[row_req]]
    hard_check_ok = draw.uniform("hard_check") >= per_model("hard_check_failure") * feature_factor
    passed = (margin > 0) & hard_check_ok

    grader = req.grader[row_req]
    score = _sigmoid(SCORE_GAIN * margin) * np.where(hard_check_ok, 1.0, HARD_FAILURE_SCORE_FACTOR)
    # Exact-match graders only know right or wrong; reviewers score on a five-point scale.
    score = np.where(grader == GRADERS.index("deterministic"), passed.astype(np.float64), score)
    score = np.where(grader == GRADERS.index("human"), np.rint(score * 4.0) / 4.0, score)
    # The model cannot see that its own output is malformed, so its confidence ignores the hard check.
    confidence = _sigmoid(per_model("confidence_bias") + CONFIDENCE_GAIN * margin
                          + CONFIDENCE_NOISE * draw.normal("confidence"))
    checker = _sigmoid(CHECKER_BIAS + CHECKER_GAIN * margin + CHECKER_NOISE * draw.normal("checker")
                       - CHECKER_HARD_FAILURE_PENALTY * ~hard_check_ok)

    output_median = _slice_values("output_tokens", slice_code) * per_model("verbosity")
    output_noise = np.exp(_slice_values("output_sigma", slice_code) * draw.normal("output_tokens"))
    output_tokens = np.maximum(1, np.rint(output_median * output_noise)).astype(np.int64)

    cache_hit = draw.uniform("cache_hit") < per_model("cache_hit_rate")
    cacheable = (np.minimum(req.prefix_tokens[row_req], input_tokens) // CACHE_BLOCK_TOKENS) * CACHE_BLOCK_TOKENS
    cached = np.where(cache_hit, cacheable, 0).astype(np.int64)
    cache_reported = draw.uniform("cache_reported") >= CACHE_UNREPORTED_SHARE

    slowdown = 1.0 + PEAK_SLOWDOWN * _load(ts_us, start_us, start)
    uncached_prefill = input_tokens - (1.0 - CACHED_PREFILL_FACTOR) * cached
    ttft = (per_model("ttft_ms") * np.exp(TTFT_SIGMA * draw.normal("ttft"))
            + per_model("prefill_ms_per_token") * uncached_prefill) * slowdown
    per_token = per_model("ms_per_output_token") * np.exp(TOKEN_TIME_SIGMA * draw.normal("token_time")) * slowdown
    latency = ttft + output_tokens * per_token

    input_price, cached_price, output_price = _prices_at(model_code, ts_us)
    cost = (input_tokens - cached) * input_price + cached * cached_price + output_tokens * output_price

    # Answer keys by the answer's content (margin > 0: correct), whatever its hard check says of its form.
    correct = splitmix64(keys.hashes[row_req])
    common = draw.uniform("common_wrong_answer") < COMMON_WRONG_SHARE
    own = splitmix64(correct ^ splitmix64((model_code * 2 + sample + 1).astype(np.uint64)))
    answer_key = np.where(margin > 0, correct, np.where(common, splitmix64(correct ^ _WRONG_SALT), own))

    return pl.DataFrame([
        ids.gather(row_req),
        _strings(MODELS, model_code, "model"),
        pl.Series("sample", sample, dtype=pl.Int64),
        pl.Series("input_tokens", input_tokens, dtype=pl.Int64),
        pl.Series("cached_input_tokens", cached, dtype=pl.Int64),
        pl.Series("output_tokens", output_tokens, dtype=pl.Int64),
        # Logged values carry the precision a log line would, which also keeps the files small.
        pl.Series("latency_ms", np.round(latency, 1)),
        pl.Series("ttft_ms", np.round(ttft, 1)),
        pl.Series("passed", passed),
        pl.Series("score", np.round(score, 4)),
        pl.Series("confidence", np.round(confidence, 4)),
        pl.Series("checker_score", np.round(checker, 4)),
        pl.Series("hard_check_ok", hard_check_ok),
        pl.Series("cost_usd", cost),
        _strings(GRADERS, grader, "grader"),
        # 32 bits are plenty to tell a request's few answers apart, and keep the file small
        pl.Series("answer_key", answer_key >> np.uint64(32), dtype=pl.UInt64).cast(pl.String),
        pl.Series("_cache_reported", cache_reported),
    ]).with_columns(
        pl.when("_cache_reported").then("cached_input_tokens").alias("cached_input_tokens"),
    ).drop("_cache_reported")


def _request_ids(first: int, end: int, id_width: int) -> pl.Series:
    """The ids of the requests at global indices first .. end-1 ("req-00000001" is index 0)."""
    number = pl.int_range(first + 1, end + 1, dtype=pl.Int64, eager=True)
    return pl.select((pl.lit("req-") + number.cast(pl.String).str.zfill(id_width)).alias("request_id")).to_series()


def _sessions(first: int, count: int, id_width: int, seed: int) -> tuple[pl.Series, pl.Series]:
    """`session_id` and `turn` of the requests at global indices first .. first+count-1 (see SESSION_SHARE).
    A block's earlier requests may lie in the chunk before: their keyed draws are made again here."""
    begin = first - first % SESSION_BLOCK
    index = np.arange(begin, first + count)
    multi = keyed_uniform(seed, DRAW_PREFIX + "session", _request_ids(begin, first + count, id_width)) < SESSION_SHARE
    before = np.cumsum(multi) - multi  # multi-turn requests before each, since `begin`
    turn = before - before[index - index % SESSION_BLOCK - begin]
    block = pl.Series(index // SESSION_BLOCK, dtype=pl.Int64).cast(pl.String).str.zfill(id_width)
    keep = slice(first - begin, None)
    session = pl.select(pl.when(pl.Series(multi[keep])).then(pl.lit("ses-") + block[keep])).to_series()
    return session.alias("session_id"), pl.Series("turn", np.where(multi, turn, 0)[keep], dtype=pl.Int64).set(
        pl.Series(~multi[keep]), None)


def _chunk(ts_us: np.ndarray, first: int, id_width: int, seed: int, start: date,
           mix_shift: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Traffic and outcomes of the requests with these (sorted) timestamps; `first` is the global index."""
    start_us = _epoch_us(start)
    ids = _request_ids(first, first + len(ts_us), id_width)
    keys = _Keyed(seed, key_hashes(ids))
    req = _draw_requests(keys, ts_us, start_us, mix_shift)
    traffic = pl.DataFrame([
        ids,
        pl.Series("ts", ts_us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        _strings(SLICE_NAMES, req.slice_code, "slice"),
        pl.Series("input_tokens", req.input_tokens, dtype=pl.Int64),
        _strings(FEATURES, req.feature, "feature"),
        _strings(TIERS, req.tier, "customer_tier"),
        _strings(LANGUAGES, req.language, "language"),
        *_sessions(first, len(ts_us), id_width, seed),
    ])
    return traffic, _draw_answers(keys, req, start_us, start, ids)


def _check_arguments(requests: int, days: int, seed: int, chunk_size: int) -> None:
    for name, value, least in (("requests", requests, 1), ("days", days, 1), ("seed", seed, 0),
                               ("chunk size", chunk_size, 1)):
        if value < least:
            raise RoutesimError(f"{name} must be at least {least}, got {value}")


# --gold-rate: a judge to calibrate, and gold grades on a random subset of its answers (see `with_gold`).
JUDGE_PASSES_FAILURES = 0.25  # the demonstration judge passes a quarter of the answers that fail,
JUDGE_FAILS_PASSES = 0.02  # and fails 2% of those that pass: too generous, as LLM judges often are
GOLD_GRADER = "human"
_JUDGE_PURPOSE, _GOLD_PURPOSE = "judge-error", "gold-subset"  # keyed draws (simulator.core.draws)


def check_gold_rate(rate: float) -> None:
    if not 0 < rate <= 1:
        raise RoutesimError(f"the gold rate must lie in (0, 1], got {rate}", where="--gold-rate",
                            fix="e.g. --gold-rate 0.1 gives a tenth of the judged answers a human grade")


def with_gold(outcomes: pl.DataFrame, rate: float, seed: int) -> pl.DataFrame:
    """The answers graded by the LLM judge (`grader = llm_judge`) with a judge's verdict in `passed`, and a
    random share `rate` of them with the true verdict as a gold grade.

    The judge passes a true failure with probability JUDGE_PASSES_FAILURES and fails a true pass with
    probability JUDGE_FAILS_PASSES. Each judged answer is drawn for gold grading independently with
    probability `rate` (a Poisson sample): `gold_passed` is its true verdict, `gold_grader` `human`,
    `gold_inclusion_probability` = `rate`; the columns are null elsewhere. Answers of the other graders
    (deterministic, human) keep their verdict, which is gold already. Both draws are keyed by (seed,
    purpose, request id, model, sample), so they leave every other column as it was.
    """
    check_gold_rate(rate)
    keys = outcomes.select(pl.format("{}|{}|{}", "request_id", "model", "sample")).to_series()
    error, drawn = keyed_uniform(seed, _JUDGE_PURPOSE, keys), keyed_uniform(seed, _GOLD_PURPOSE, keys) < rate
    truth = outcomes["passed"].to_numpy()
    judged = (outcomes["grader"] == "llm_judge").to_numpy()
    verdict = np.where(truth, error >= JUDGE_FAILS_PASSES, error < JUDGE_PASSES_FAILURES)
    gold = pl.Series("__gold", judged & drawn)
    return outcomes.with_columns(pl.Series("passed", np.where(judged, verdict, truth)), gold).with_columns(
        pl.when("__gold").then(pl.Series(truth)).alias("gold_passed"),
        pl.when("__gold").then(pl.lit(GOLD_GRADER)).alias("gold_grader"),
        pl.when("__gold").then(pl.lit(float(rate))).alias("gold_inclusion_probability"),
    ).drop("__gold")


def generate_week(requests: int, days: int = 7, seed: int = 2026, *, start: date = DEFAULT_START,
                  mix_shift: bool = True, chunk_size: int = 1_000_000, gold_rate: float | None = None
                  ) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Yields (traffic_chunk, outcomes_chunk) pairs in timestamp order, so 10M requests never sit in memory at once.

    `requests` arrivals are spread over `days` days from 00:00 UTC of `start`. Request ids number the
    requests in timestamp order ("req-00000001", ...). Each outcomes chunk holds every answer to the
    requests of its traffic chunk. With `gold_rate`, the judged answers get a judge's verdict and a random
    share of them a gold grade (`with_gold`). `chunk_size` bounds memory only: it does not change the data.
    """
    _check_arguments(requests, days, seed, chunk_size)
    if gold_rate is not None:
        check_gold_rate(gold_rate)
    ts_us = _timestamps(requests, days, seed, start)
    id_width = max(8, len(str(requests)))
    for first in range(0, requests, chunk_size):
        traffic, outcomes = _chunk(ts_us[first: first + chunk_size], first, id_width, seed, start, mix_shift)
        yield traffic, (outcomes if gold_rate is None else with_gold(outcomes, gold_rate, seed))


def write_week(out: Path, requests: int, days: int = 7, seed: int = 2026, *, mix_shift: bool = True,
               gold_rate: float | None = None, progress: Callable[[int], None] | None = None) -> None:
    """Writes out/traffic.parquet and out/outcomes.parquet (pyarrow ParquetWriter, chunk by chunk).

    Writes to temporary files in `out` and renames them into place only when complete, so a failed run
    never leaves half-written files. `progress(n)` is called with the number of requests written so far.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Unique names keep concurrent runs apart; the writer creates them, so they get the usual permissions.
    token = uuid.uuid4().hex[:12]
    temporary = [out / f".{name}.{token}.tmp" for name in (TRAFFIC_FILE, OUTCOMES_FILE)]
    try:
        writers: list[pq.ParquetWriter] = []
        try:
            written = 0
            for traffic, outcomes in generate_week(requests, days, seed, mix_shift=mix_shift, gold_rate=gold_rate):
                tables = (traffic.to_arrow(), outcomes.to_arrow())
                if not writers:
                    for path, table in zip(temporary, tables, strict=True):
                        writers.append(pq.ParquetWriter(path, table.schema, compression="zstd"))
                for writer, table in zip(writers, tables, strict=True):
                    writer.write_table(table)
                written += traffic.height
                if progress is not None:
                    progress(written)
        finally:
            for writer in writers:
                writer.close()
        for path, name in zip(temporary, (TRAFFIC_FILE, OUTCOMES_FILE), strict=True):
            os.replace(path, out / name)
    finally:
        for path in temporary:
            path.unlink(missing_ok=True)
