"""The HTML report: replaying and saving what it shows (build.py), its charts (charts.py), the page
(html.py), and the gate as text (gate.py: table cells, Markdown, HTML fragment).

A new report section is a table computed in simulator.analyses.tables, saved by build.py and drawn by
html.py.
"""
