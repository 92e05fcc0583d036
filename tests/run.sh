#!/usr/bin/env bash
# Runs every test: formatting, clippy, unit and integration tests (which start
# the real daemon), the compatibility suite against the real circusctl, and the
# worker recipes (uvicorn, gunicorn, a plain Python worker, a Rust listenfd worker).
# Installs what it needs on a fresh machine: Python tools into .venv from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

need_python_venv() {
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        echo "== installing python3-venv (apt-get)"
        if command -v sudo >/dev/null 2>&1 && [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv
    fi
}

# The compatibility tests drive Ringmaster with Circus's own Python tools.
# The worker recipes run uvicorn and gunicorn under Ringmaster.
# tests/http.rs parses /metrics with the Prometheus client's own parser.
PROMETHEUS_CLIENT=prometheus-client==0.23.1
if ! .venv/bin/python -c 'import circus, uvicorn, gunicorn' >/dev/null 2>&1; then
    need_python_venv
    echo "== creating .venv with circus==0.19.0, uvicorn, gunicorn and $PROMETHEUS_CLIENT from PyPI"
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check circus==0.19.0 -r config/requirements-workers.txt "$PROMETHEUS_CLIENT"
elif ! .venv/bin/python -c 'import prometheus_client' >/dev/null 2>&1; then
    echo "== adding $PROMETHEUS_CLIENT to .venv"
    .venv/bin/pip install -q --disable-pip-version-check "$PROMETHEUS_CLIENT"
fi
export RINGMASTER_TEST_VENV="$PWD/.venv"

# tests/dashboard.rs drives the dashboard in a real headless Chromium.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "== installing chromium and chromium-driver (apt-get)"
    if command -v sudo >/dev/null 2>&1 && [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo build --examples (the Rust worker recipe runs examples/listenfd_worker)"
cargo build --locked --examples
echo "== cargo test"
cargo test --locked --all-targets "$@"
