#!/usr/bin/env bash
# Runs every test: formatting, clippy, unit and integration tests (which start
# the real daemon), and the compatibility suite against the real circusctl.
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
if [ ! -x .venv/bin/circusctl ]; then
    need_python_venv
    echo "== creating .venv with circus==0.19.0 from PyPI"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check circus==0.19.0
fi
export RINGMASTER_TEST_VENV="$PWD/.venv"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets "$@"
