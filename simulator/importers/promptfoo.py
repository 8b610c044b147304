"""promptfoo results JSON (`promptfoo eval -o results.json`, summary version 2 or 3).

One entry of `results.results` is one answer of one provider to one test case and prompt. Mapping:
- request_id: the test variable named by --request-id (a var or `testCase.metadata` key), else
  `test-<testIdx>` (`test-<testIdx>/prompt-<promptIdx>` when the eval has several prompts); repeated
  runs (--repeat) of the same test and provider are its samples 0, 1, ... in file order;
- model: the provider's `label`, else its `id` without promptfoo's `provider:` and `kind:` prefixes
  (`openai:chat:gpt-4o-mini` -> `gpt-4o-mini`, `bedrock:anthropic.claude-v2:1` -> `anthropic.claude-v2:1`);
- passed: `success` (every assertion passed and no error); score: `score` (divided by --score-scale);
- grader: llm_judge when an assertion is model-graded (llm-rubric, factuality, g-eval, model-graded-*,
  answer-relevance, context-*, select-best, ...), deterministic when every assertion is a plain check,
  null without assertions (or --grader);
- hard_check_ok: false when promptfoo recorded an error (failureReason 2, or `error` set);
- tokens: `response.tokenUsage.prompt` / `.completion` (else the result's `tokenUsage`). promptfoo's
  `cached` counts tokens served from promptfoo's own response cache, not the provider's prompt cache:
  cached_input_tokens stays null, and answers served from promptfoo's cache (`response.cached`) have no
  real latency or usage: they can only be merged as grades (rerun with --no-cache to import them);
- latency_ms: `latencyMs` (already milliseconds); cost_usd: `cost` (USD); ts: the summary's timestamp;
- slice: the var or `testCase.metadata` key named by --slice.
Test numbers restart in every results file: importing several files, name requests with --request-id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.core.errors import RoutesimError
from simulator.importers.options import ImportOptions
from simulator.importers.rows import (
    BadRow,
    ImportLog,
    Row,
    as_text,
    boolean,
    collect,
    error_type,
    first_count,
    json_document,
    label_row,
    number,
    timestamp,
    unit_score,
)

MODEL_GRADED = {"llm-rubric", "factuality", "g-eval", "answer-relevance", "context-faithfulness", "context-recall",
                "context-relevance", "select-best", "max-score", "model-graded-closedqa", "model-graded-factuality",
                "pi", "classifier", "moderation", "conversation-relevance"}
ERROR = 2
# The middle part of promptfoo provider ids such as openai:chat:gpt-4o-mini.
PROVIDER_KINDS = {"chat", "completion", "messages", "responses", "assistant", "realtime", "converse", "embedding",
                  "embeddings"}


def mapping(options: ImportOptions) -> list[tuple[str, str]]:
    return [
        ("request_id", options.request_id_source("var", "test-<testIdx>")),
        ("model", "provider.label (else provider.id without its prefix)"),
        ("passed", "success"),
        ("score", f"score / {options.score_scale:g}"),
        ("hard_check_ok", "no error (failureReason != 2)"),
        ("input_tokens", "response.tokenUsage.prompt"),
        ("cached_input_tokens", "null (tokenUsage.cached is promptfoo's response cache)"),
        ("output_tokens", "response.tokenUsage.completion"),
        ("latency_ms", "latencyMs"),
        ("cost_usd", f"cost ({options.cost_unit})"),
        ("ts", "results.timestamp"),
        ("slice", options.slice_source("var")),
    ]


def _summary(path: Path) -> dict:
    document = json_document(path)
    summary = document.get("results") if isinstance(document, dict) else None
    if isinstance(summary, dict) and isinstance(summary.get("results"), list):
        return summary
    if isinstance(document, dict) and isinstance(summary, list):
        return document
    raise RoutesimError("not a promptfoo results file (no results.results list)", where=str(path),
                        fix="write the results with 'promptfoo eval -o results.json'")


def model_name(provider: Any) -> str | None:
    if isinstance(provider, str):
        provider = {"id": provider}
    if not isinstance(provider, dict):
        return None
    label = as_text(provider.get("label"))
    identity = as_text(provider.get("id"))
    if label or identity is None or "://" in identity or ":" not in identity:
        return label or identity
    parts = identity.split(":")[1:]
    if len(parts) > 1 and parts[0] in PROVIDER_KINDS:
        parts = parts[1:]
    return ":".join(parts)


def _grader(result: dict, options: ImportOptions) -> str | None:
    if options.grader:
        return options.grader
    kinds = {(assertion or {}).get("type") for assertion in (result.get("testCase") or {}).get("assert") or []
             if isinstance(assertion, dict)}
    kinds |= {((component or {}).get("assertion") or {}).get("type")
              for component in (result.get("gradingResult") or {}).get("componentResults") or []
              if isinstance(component, dict)}
    kinds.discard(None)
    if not kinds:
        return None
    by_model = any(kind in MODEL_GRADED or str(kind).startswith("model-graded") for kind in kinds)
    return "llm_judge" if by_model else "deterministic"


def result_row(where: str, result: Any, summary: dict, options: ImportOptions, prompts: int,
               log: ImportLog) -> Row:
    if not isinstance(result, dict):
        raise BadRow("not a result", "expected an object with provider, success and score")
    response = result.get("response") or {}
    test = result.get("testCase") or {}
    variables = result.get("vars") or test.get("vars") or {}
    usage = response.get("tokenUsage") or result.get("tokenUsage") or {}
    from_cache = boolean(response.get("cached"), "response.cached")
    test_index, prompt_index = result.get("testIdx"), result.get("promptIdx")
    request_id = f"test-{test_index}" + (f"/prompt-{prompt_index}" if prompts > 1 else "")
    errored = result.get("failureReason") == ERROR or bool(result.get("error"))
    if test_index is None and not options.request_id_key:
        raise BadRow("no testIdx", "this export does not number its tests: name the test variable that identifies "
                                   "the request with --request-id VAR")
    failure = error_type(result.get("error"), response.get("error")) if errored else None
    if errored and not usage and not from_cache:
        message = as_text(result.get("error") or response.get("error")) or ""
        raise BadRow(f"promptfoo error without usage ({failure})", message[:200])
    row = Row(where=where, request_id=request_id if test_index is not None else None, error_type=failure,
              ts=timestamp(summary.get("timestamp"), "timestamp"), model=model_name(result.get("provider")),
              input_tokens=None if from_cache else first_count(usage, ("prompt",), "tokenUsage.prompt"),
              output_tokens=None if from_cache else first_count(usage, ("completion",), "tokenUsage.completion"),
              latency_ms=None if from_cache else number(result.get("latencyMs"), "latencyMs"),
              cost_usd=options.cost(number(result.get("cost", response.get("cost")), "cost")), ok=not errored,
              passed=boolean(result.get("success"), "success"),
              score=unit_score(result.get("score"), "score", scale=options.score_scale),
              grader=_grader(result, options))
    if from_cache:
        log.note("answers served from promptfoo's response cache carry no real latency or usage: they can be "
                 "merged as grades but not imported as calls (rerun promptfoo with --no-cache)")
    label_row(row, options, variables, test.get("metadata"), result.get("metadata"))
    return row


def read(paths: list[Path], options: ImportOptions, log: ImportLog) -> list[Row]:
    rows = []
    for path in paths:
        summary = _summary(path)
        prompts = len({result.get("promptIdx") for result in summary["results"] if isinstance(result, dict)})
        items = ((f"{path}, results[{index}]", result) for index, result in enumerate(summary["results"]))
        rows += collect(items, lambda where, result: result_row(where, result, summary, options, prompts, log), log)
    return rows
