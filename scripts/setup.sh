#!/usr/bin/env bash
# Sets up a development machine: system packages the tests use, then a virtualenv with
# wistro and its dev tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)      # `wistro graph --format svg`
command -v chromium >/dev/null 2>&1 || need+=(chromium) # the real-browser JupyterLab test
command -v node >/dev/null 2>&1 || need+=(nodejs npm)   # building the widget bundle
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: please install ${need[*]} with your package manager" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[dev]"

# The notebook widgets' JavaScript: labextension/ -> wistro_jupyter/static/*.js (not committed).
(cd labextension && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
echo "setup: done. Run the tests with: .venv/bin/pytest"
