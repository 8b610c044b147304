"""routesim: replay logged LLM traffic under routing policies, offline.

Wings, each importing only from the ones below it (declared as import-linter contracts in pyproject.toml):

- simulator.cli: the commands and their terminal views;
- simulator.report: the HTML report, its charts and the gate's Markdown;
- simulator.analyses, simulator.importers, simulator.datasets: what is computed over replays, what reads
  other tools' logs, and the synthetic and public datasets;
- simulator.core: the data contract, prices, scenarios, predicates, the engine, metrics, results, statistics.

The library entry points are simulator.core.engine.replay and simulator.core.scenario.load_scenario.
"""
