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
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)  # workers die with their engine (--pdeathsig)
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
for pkg in labextension labextension/workbench; do
  lock=$pkg/package-lock.json installed=$pkg/node_modules/.package-lock.json
  if [ ! -f "$installed" ] || [ "$lock" -nt "$installed" ]; then
    (cd "$pkg" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
(cd labextension && npm run --silent build)

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[dev]"

# The JupyterLab extension (the Workbench panel): labextension/workbench/ ->
# wistro_jupyter/labextension/ (not committed; `jupyter-builder` is in the venv now). An editable
# install does not install the wheel's shared-data, so the venv gets what `jupyter labextension
# develop` makes: a link to the built extension, and one to the server extension's config.
(cd labextension/workbench && PATH="$PWD/../../.venv/bin:$PATH" npm run --silent build >/dev/null)
mkdir -p .venv/share/jupyter/labextensions .venv/etc/jupyter/jupyter_server_config.d
# the editable install may have made a real folder there (its install.json): a link replaces it
ext=.venv/share/jupyter/labextensions/wistro-workbench
[ -L "$ext" ] || rm -rf "$ext"
ln -sfn "$PWD/wistro_jupyter/labextension" "$ext"
ln -sfn "$PWD/jupyter-config/jupyter_server_config.d/wistro_jupyter.json" \
  .venv/etc/jupyter/jupyter_server_config.d/wistro_jupyter.json
echo "setup: done. Run the tests with: .venv/bin/pytest"
