"""Datasets routesim makes: the seeded synthetic support week (generate.py) and the conversion of public
routing datasets into data folders (public_data.py: sources converted in public_sources.py, READMEs written by public_readme.py)."""
