# Sourced by scripts/*: create or reuse .venv and install shardgen into it with the given extras.
# Reinstalls only when pyproject.toml changed since the last install (a stamp file remembers).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"

ensure_venv() {
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "scripts: creating $VENV" >&2
        "$PYTHON_BIN" -m venv "$VENV"
    fi
    local stamp="$VENV/.shardgen-installed-$extras"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$0" -nt "$stamp" ]; then
        echo "scripts: installing shardgen[$extras] into .venv" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$extras]"
        touch "$stamp"
    fi
}

# PyTorch for the DataLoader tests: installed once, pinned, and only when it cannot be imported.
# The pin matters: here torch==2.13.0 is a CPU build that installs in seconds, while an unpinned
# `torch` (or the `torch` extra) resolves to a multi-GB download.
ensure_torch() {
    if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
        echo "scripts: installing torch==2.13.0 into .venv" >&2
        # Not fatal: where this pin cannot be had, the torch tests skip and say why (pytest -ra).
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.13.0" ||
            echo "scripts: WARNING: could not install torch==2.13.0; the DataLoader tests will skip" >&2
    fi
}
