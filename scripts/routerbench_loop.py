"""RouterBench's cascade evaluated as RouterBench does it, one prompt at a time, against `routesim replay`.

RouterBench evaluates a cascading router with a per-row loop over a wide table (one row per prompt, per
model its performance score and its cost): for each prompt, walk the models in cascade order; before each
call stop if the call's cost reaches what is left of a per-prompt cost cap; add the call's cost and take it
off the cap; let the judge (wrong with a fixed probability) compare the answer's score with a performance
threshold, and stop at the first answer it accepts; the last answer's score counts. This script implements
that algorithm from its description (not RouterBench's code), step for step, in two styles, each timed
against routesim:
- `iterrows`, the faithful one: RouterBench's evaluator walks a pandas DataFrame with `iterrows()`,
  reading each model's columns from the row by name, as often as it does; so does this loop;
- `dicts`: the same walk over plain dict rows, much faster than `iterrows`, so this comparison favours
  the loop.
The judge's verdicts are the data's seeded `noisy_gate_pass` column (RouterBench draws them unseeded,
one `np.random.rand()` per call), so both sides must give the same totals, and the script checks it.

Usage: .venv/bin/python scripts/routerbench_loop.py [--scale 100] [--runs 3] [--style iterrows dicts]
The iterrows style needs pandas (`.venv/bin/pip install 'routesim[bench]'`).

It writes the shipped data/routerbench scaled `--scale` times with new request ids into
.cache/bench/routerbench-xSCALE (once), then times, alternating, whole processes: the loop (reading the
Parquet files included) and `routesim replay --json` of scenarios/routerbench/cascade-noisy.yaml on the
scaled data (the layout cached by an untimed first run). It prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "routerbench" / "cascade-noisy.yaml"
CASCADE = ("mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview")  # as in SCENARIO
JUDGE = "noisy_gate_pass"
# RouterBench's cap on one prompt's cost (USD): far above any prompt here, but checked before every call.
MAX_COST_PER_RESPONSE = 100.0


def scaled_folder(scale: int) -> Path:
    """data/routerbench repeated `scale` times, copy k's request ids suffixed '#k' and its times shifted by
    k x the data's span, so every copy is a new request."""
    import polars as pl

    folder = ROOT / ".cache" / "bench" / f"routerbench-x{scale}"
    if (folder / "outcomes.parquet").exists():
        return folder
    traffic = pl.read_parquet(ROOT / "data" / "routerbench" / "traffic.parquet")
    outcomes = pl.read_parquet(ROOT / "data" / "routerbench" / "outcomes.parquet")
    span = (traffic["ts"].max() - traffic["ts"].min()).total_seconds() + 1
    copies = [(traffic.with_columns(pl.col("request_id") + f"#{k}",
                                    pl.col("ts") + pl.duration(seconds=span * k)),
               outcomes.with_columns(pl.col("request_id") + f"#{k}")) for k in range(scale)]
    folder.mkdir(parents=True, exist_ok=True)
    pl.concat([t for t, _ in copies]).write_parquet(folder / "traffic.parquet")
    pl.concat([o for _, o in copies]).write_parquet(folder / "outcomes.parquet")
    return folder


def wide_rows(folder: Path) -> dict[str, dict]:
    """RouterBench's input table: one row per prompt, and per model of the cascade its performance score
    (`MODEL`: 1.0 when its answer passed, else 0.0), its cost (`MODEL|total_cost`) and whether the simulated
    judge errs on it (`MODEL|judge_wrong`: the verdict differs from the truth)."""
    import pyarrow.parquet as pq

    wide: dict[str, dict] = {}
    for row in pq.read_table(folder / "outcomes.parquet",
                             columns=["request_id", "model", "sample", "passed", "hard_check_ok", "cost_usd",
                                      JUDGE]).to_pylist():
        if row["sample"] == 0 and row["model"] in CASCADE:
            entry = wide.setdefault(row["request_id"], {})
            correct = bool(row["passed"] and row["hard_check_ok"])
            entry[row["model"]] = float(correct)
            entry[row["model"] + "|total_cost"] = row["cost_usd"]
            entry[row["model"] + "|judge_wrong"] = bool(row[JUDGE] and row["hard_check_ok"]) != correct
    return dict(sorted(wide.items()))


def loop(folder: Path, style: str) -> dict:
    """RouterBench's evaluation of the cascade: a wide table, then one prompt at a time, step for step as its
    evaluator walks it: the cost cap checked before each call, the call's cost added and taken off the cap,
    the judge (wrong or not) comparing the answer's score with the performance threshold (the 0.95 quantile
    of all scores, as RouterBench sets it), the last answer's score kept. RouterBench draws whether the judge
    errs with `np.random.rand()` per call; this loop reads the same event from the data instead."""
    import numpy as np

    wide = wide_rows(folder)
    threshold = float(np.quantile([entry[model] for entry in wide.values() for model in CASCADE], 0.95))
    if style == "iterrows":
        import pandas as pd

        rows = pd.DataFrame.from_dict(wide, orient="index").iterrows()
    else:
        rows = iter(wide.items())
    cost, solved, prompts = 0.0, 0.0, 0
    for _, row in rows:
        prompts += 1
        cap, spent, last = MAX_COST_PER_RESPONSE, 0.0, 0.0
        for model in CASCADE:
            if row[model + "|total_cost"] >= cap and spent > 0:
                break
            judge_wrong = row[model + "|judge_wrong"]
            spent += row[model + "|total_cost"]
            cap -= row[model + "|total_cost"]
            accepted = row[model] < threshold if judge_wrong else row[model] >= threshold
            last = row[model]
            if accepted:
                break
        solved += last
        cost += spent
    return {"requests": prompts, "passed": int(solved), "total_cost_usd": cost}


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr}")
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--style", nargs="+", choices=("iterrows", "dicts"), default=["iterrows", "dicts"])
    parser.add_argument("--loop", type=Path, help=argparse.SUPPRESS)  # the loop's own process
    arguments = parser.parse_args()
    if arguments.loop:
        print(json.dumps(loop(arguments.loop, arguments.style[0])))
        return
    import yaml

    folder = scaled_folder(arguments.scale)
    # Like routesim bench, keep the layouts beside the benchmark data, not in the user's cache.
    os.environ.setdefault("ROUTESIM_CACHE_DIR", str(ROOT / ".cache" / "bench" / "layouts"))
    scenario = yaml.safe_load(SCENARIO.read_text())
    scenario |= {"data": str(folder)}
    scenario_file = folder / "cascade-noisy.yaml"
    scenario_file.write_text(yaml.safe_dump(scenario, sort_keys=False))
    routesim = [str(Path(sys.executable).with_name("routesim")), "replay", str(scenario_file), "--json"]
    loops = {f"loop ({style})": [sys.executable, __file__, "--loop", str(folder), "--style", style]
             for style in arguments.style}
    timed(routesim)  # first use: validation and the layout build, once
    times: dict[str, list[float]] = {name: [] for name in [*loops, "routesim"]}
    outputs = {}
    for _ in range(arguments.runs):
        for name, command in [*loops.items(), ("routesim", routesim)]:
            seconds, outputs[name] = timed(command)
            times[name].append(seconds)
    summary = json.loads(outputs["routesim"])
    summary = summary[0] if isinstance(summary, list) else summary
    routesim_s = statistics.median(times["routesim"])
    print(f"RouterBench cascade on data/routerbench x{arguments.scale} ({summary['requests']:,} prompts), "
          f"whole processes, median of {arguments.runs}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"  routesim replay     {routesim_s:8.2f} s")
    for name in loops:
        by_loop = json.loads(outputs[name])
        agree = (by_loop["requests"] == summary["requests"]
                 and abs(by_loop["passed"] / by_loop["requests"] - summary["pass_rate"]) < 1e-12
                 and abs(by_loop["total_cost_usd"] - summary["total_cost_usd"]) <= 1e-6 * by_loop["total_cost_usd"])
        loop_s = statistics.median(times[name])
        speed = (f"{loop_s / routesim_s:.1f}x faster" if loop_s >= routesim_s
                 else f"{routesim_s / loop_s:.1f}x slower")
        print(f"  {name:<19} {loop_s:8.2f} s   routesim is {speed}; totals agree: {agree}")
        if not agree:
            raise SystemExit(f"{name} and routesim disagree: {by_loop} vs requests={summary['requests']}, "
                             f"pass_rate={summary['pass_rate']}, total_cost_usd={summary['total_cost_usd']}")


if __name__ == "__main__":
    main()
