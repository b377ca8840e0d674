#!/usr/bin/env bash
# Install what is missing (tools/setup_env.sh, a no-op once done), then run the tests.
#   tools/run_tests.sh [pytest args]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "${VPETL_VENV:-$ROOT/.venv}/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
