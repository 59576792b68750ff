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
