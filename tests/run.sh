#!/usr/bin/env bash
# Runs every test: formatting, clippy, unit and integration tests (which start
# the real daemon), the compatibility suite against the real circusctl, and the
# worker recipes (uvicorn, gunicorn, a plain Python worker, a Rust listenfd worker).
# Installs what it needs on a fresh machine: Python tools into .venv from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v sudo >/dev/null 2>&1 && [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi

need_python_venv() {
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        echo "== installing python3-venv (apt-get)"
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv
    fi
}

# tests/top.rs runs `ringmaster top` in a real terminal: tmux.
if ! command -v tmux >/dev/null 2>&1; then
    echo "== installing tmux (apt-get)"
    $SUDO apt-get update -qq && $SUDO apt-get install -y tmux
fi

# The compatibility tests drive Ringmaster with Circus's own Python tools.
# The worker recipes run uvicorn and gunicorn under Ringmaster.
# tests/deploy_files.rs validates the Kubernetes and Nomad examples.
if ! .venv/bin/python -c 'import circus, uvicorn, gunicorn, kubernetes_validate, hcl2, yaml' >/dev/null 2>&1; then
    need_python_venv
    echo "== creating .venv with circus==0.19.0, uvicorn, gunicorn and the deploy validators from PyPI"
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check circus==0.19.0 \
        -r config/requirements-workers.txt -r tests/requirements-deploy.txt
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
