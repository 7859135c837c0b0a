#!/usr/bin/env bash
# Refresh requirements.lock: resolve pyproject.toml's dependencies and its test extra afresh in a
# new virtual environment, then pin every version that resolved.
#
#     scripts/lock.sh          # then run the tests, and commit requirements.lock
#
# torch is left out of the lock: the install commands pin it themselves (torch==2.13.0), and the
# same pin takes the CPU wheel on a machine without a GPU and the CUDA build elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$venv/bin/python" -m pip install -q torch==2.13.0 -e ".[test]"
{
    echo "# Every dependency's version as CI tested it, for \`pip install -c requirements.lock\`."
    echo "# Written by scripts/lock.sh with $("$venv/bin/python" --version) on $(date -u +%Y-%m-%d);"
    echo "# torch is pinned by the install commands themselves (torch==2.13.0)."
    "$venv/bin/python" -m pip freeze --exclude-editable | grep -iv '^torch=='
} >requirements.lock
echo "requirements.lock: $(grep -cv '^#' requirements.lock) pins"
