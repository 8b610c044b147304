"""Real public routing data in the data contract: RouterBench, RouteLLM and RouterArena.

`build_all(source, out)` converts the upstream files kept in `source` (the shared public-data folder; its
README says where each file came from) into `out/routerbench`, `out/routellm` and `out/routerarena`. Each
folder gets its README (simulator.datasets.public_readme, with the numbers computed from the converted
tables), the upstream licence texts, and for RouteLLM the derived price sheet. `routesim public-data` runs
it. What is recorded and what is derived is described in simulator.datasets.public_sources.
"""

from __future__ import annotations

import json
from pathlib import Path

from simulator.core.contract import SIGNALS_FILE, write_folder
from simulator.core.outputs import check_destination
from simulator.datasets.public_readme import readme
from simulator.datasets.public_sources import (
    LLMPERF_LICENCE,
    fit_latency,
    need_file,
    routellm,
    routerarena,
    routerbench,
)

LICENCES = {
    "routerbench": [("routerbench-0shot-subset/LICENSE.routerbench-MIT.txt", "LICENSE.routerbench-MIT.txt"),
                    LLMPERF_LICENCE],
    "routellm": [("routellm-evals/LICENSE.upstream-Apache-2.0.txt", "LICENSE.routellm-Apache-2.0.txt"),
                 ("price-sheets/litellm-1.110.2/LICENSE.upstream.txt", "LICENSE.litellm-MIT.txt"), LLMPERF_LICENCE],
    "routerarena": [("routerarena-cached/LICENSE.upstream-Apache-2.0.txt", "LICENSE.routerarena-Apache-2.0.txt"),
                    LLMPERF_LICENCE],
}


def build_all(source: Path, out: Path) -> list[Path]:
    """Converts the three datasets into `out/<name>/`, each written atomically. Every dataset is converted and
    every destination checked (simulator.core.outputs.check_destination) before the first is written, so a
    source problem or a refused destination leaves `out` as it was, never two builds side by side."""
    source, out = Path(source), Path(out)
    latency = fit_latency(source)
    converted = []
    for convert in (routerbench, routellm, routerarena):
        dataset = convert(source, latency)
        files = dict(dataset.files)
        for upstream, name in LICENCES[dataset.name]:
            files[name] = need_file(source / upstream).read_text(encoding="utf-8")
        files["README.md"] = readme(dataset, latency)
        # noisy_gate_pass is a simulated judge that runs when the call returns: a serving-time signal, so a
        # cascade gated on it is a deployable policy (one gated on `passed` stays a bound).
        files[SIGNALS_FILE] = json.dumps({"serving_time": ["noisy_gate_pass"]}, indent=2) + "\n"
        converted.append((dataset, files))
    for dataset, _ in converted:
        check_destination(out / dataset.name, folder=True)
    for dataset, files in converted:
        write_folder(out / dataset.name, dataset.traffic, dataset.outcomes, files)
    return [out / dataset.name for dataset, _ in converted]
