#!/usr/bin/env bash
# Sets up a development machine: system packages the tests use, then a virtualenv with
# wistro and its dev tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)      # `wistro graph --format svg`
command -v chromium >/dev/null 2>&1 || need+=(chromium) # the real-browser JupyterLab test
command -v node >/dev/null 2>&1 || need+=(nodejs npm)   # building the widget bundle
command -v redis-server >/dev/null 2>&1 || need+=(redis-server) # the Redis bus and state tests
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: please install ${need[*]} with your package manager" >&2
  fi
fi

# The notebook widgets' JavaScript: labextension/ -> wistro_jupyter/static/*.js (not committed).
# Built first, so the build hook of the editable install (pyproject.toml) finds it up to date and
# runs no npm. `npm ci` only when node_modules is missing or older than package-lock.json.
lock=labextension/package-lock.json installed=labextension/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ "$lock" -nt "$installed" ]; then
  (cd labextension && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd labextension && npm run --silent build)

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[dev]"
echo "setup: done. Run the tests with: .venv/bin/pytest"
