#!/usr/bin/env bash
# Set up (Python packages, and Debian's Chromium for the browser tests), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
# The wings import only downward and have no cycles (contracts in pyproject.toml).
.venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest "$@"
