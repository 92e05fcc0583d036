#!/usr/bin/env bash
# Runs every test: formatting, clippy, unit and integration tests (which start
# the real daemon), the compatibility suite against the real circusctl, the
# worker recipes (uvicorn, gunicorn, a plain Python worker, a Rust listenfd
# worker), the dashboard in headless Chromium and `ringmaster top` in tmux.
# Installs what it needs on a fresh machine: Python tools into .venv from
# PyPI, tmux, wrk, chromium and chromium-driver with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v sudo >/dev/null 2>&1 && [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi

# Debian packages the tests drive: tmux (tests/top.rs), wrk (tests/upgrade.rs),
# python3-venv, and Chromium with its WebDriver (tests/dashboard.rs).
missing=()
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} (apt-get)"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Python tools, pinned: circus==0.19.0 (the compatibility tests drive
# Ringmaster with circusctl), uvicorn and gunicorn (the worker recipes), and
# tests/requirements.txt (prometheus-client parses /metrics; the validators
# of the Kubernetes and Nomad examples).
if ! .venv/bin/python -c 'import circus' >/dev/null 2>&1; then
    echo "== creating .venv from PyPI"
    rm -rf .venv
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import circus, uvicorn, gunicorn, prometheus_client, kubernetes_validate, hcl2, yaml' >/dev/null 2>&1; then
    echo "== installing the Python test tools into .venv"
    .venv/bin/pip install -q --disable-pip-version-check circus==0.19.0 \
        -r config/requirements-workers.txt -r tests/requirements.txt
fi
export RINGMASTER_TEST_VENV="$PWD/.venv"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo build --examples (the Rust worker recipe runs examples/listenfd_worker)"
cargo build --locked --examples
echo "== cargo test"
cargo test --locked --all-targets "$@"
