"""routesim: replay logged LLM traffic under routing policies, offline."""

from simulator.engine import Replay, replay
from simulator.scenario import Scenario, load_scenario

__all__ = ["Replay", "Scenario", "load_scenario", "replay"]
