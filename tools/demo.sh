#!/usr/bin/env bash
# Install what is missing (tools/setup_env.sh, a no-op once done), then run the digits demo.
#   tools/demo.sh [digits_demo.py options, e.g. --methods linear lora --verbose]
#   tools/demo.sh           # a handful of methods (linear lora adapter dtl vpt-deep full)
#   tools/demo.sh --all     # the full table, every configs/demo/vit-tiny_<name>_digits.py
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "${VPETL_VENV:-$ROOT/.venv}/bin/python" tools/demo/digits_demo.py "$@"
