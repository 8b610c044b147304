#!/usr/bin/env bash
# Set up, then replay every shipped scenario on the embedded support week.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/routesim demo
