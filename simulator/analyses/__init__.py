"""What is computed over replays: threshold sweeps, the cost-quality frontier, price what-ifs, escalation
drift, eval-driven lanes, the regression gate, and the per-scenario tables the report draws.

Analyses return data (dicts, frames); they never print or render HTML, Markdown or terminal tables. A new
analysis is a module here, reading only simulator.core.
"""
