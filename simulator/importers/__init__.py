"""Importers: gateway, tracer and eval-tool logs into the data contract.

Each format module turns the rows of its input files into `Row`s (simulator.importers.rows): one model
call, with its usage, timing, status and (for eval tools) its grade. simulator.importers.folder builds
`traffic.parquet` and `outcomes.parquet` from them (or simulator.importers.merge merges their grades onto
a data folder imported before) and writes the folder atomically with its `import-report.json`.

Traffic formats: `otel` (OpenTelemetry GenAI spans), `litellm` (LiteLLM_SpendLogs), `langfuse`
(observation exports), `openai-batch` (Batch API output). Graded formats: `inspect-ai` (eval logs),
`promptfoo` (results JSON), `csv` (any CSV with a column map).
"""
