#!/usr/bin/env bash
# Install the pinned vpetl_mm stack into a project virtual environment; a no-op the second time.
#
#   tools/setup_env.sh            # creates ./.venv (or $VPETL_VENV) and installs what is missing
#
# mmcv 2.1.0 has no wheel with compiled ops for current torch on PyPI, so it is built once from the
# PyPI sdist (its -std=c++17 raised to c++20, which torch's headers need) and cached under
# $VPETL_CACHE (default ~/.cache/vpetl_mm), keyed by mmcv, torch, Python and CPU/CUDA. A matching
# cached wheel is never rebuilt. Where nvcc and a GPU are present the CUDA ops are built as well.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VPETL_VENV:-$ROOT/.venv}
CACHE=${VPETL_CACHE:-$HOME/.cache/vpetl_mm}
PYTHON=${PYTHON:-python3.11}
MMCV_VERSION=2.1.0
REQS=$ROOT/requirements/stack.txt
STAMP=$VENV/.vpetl_mm_stack

log() { echo "[setup_env] $*" >&2; }

stamp_value() {
  cat "$REQS" "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" | sha256sum | cut -c1-16
}

if [[ -f $STAMP && "$(cat "$STAMP")" == "$(stamp_value)" ]]; then
  exit 0
fi

if [[ ! -x $VENV/bin/python ]]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY=$VENV/bin/python
PIP=("$PY" -m pip --disable-pip-version-check)

# torch first: mmcv builds against it (--no-build-isolation) and the other packages must not
# pull a different build.
torch_pin=$(grep -E '^torch==' "$REQS")
tv_pin=$(grep -E '^torchvision==' "$REQS")
if ! "$PY" -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.split('+')[0] == '${torch_pin#torch==}' and torchvision.__version__.split('+')[0] == '${tv_pin#torchvision==}'))" 2>/dev/null; then
  log "installing $torch_pin $tv_pin"
  "${PIP[@]}" install -q "$torch_pin" "$tv_pin" 'setuptools<81' wheel ninja
fi
"${PIP[@]}" install -q 'setuptools<81' wheel ninja

# --- mmcv with compiled ops, cached --------------------------------------------------------------
read -r TORCH_V PY_TAG CUDA_OK < <("$PY" - <<'PY'
import sys, shutil, torch
cuda = torch.cuda.is_available() and shutil.which('nvcc') is not None
tag = f'cu{torch.version.cuda.replace(".", "")}' if cuda else 'cpu'
print(torch.__version__.split('+')[0], f'cp{sys.version_info.major}{sys.version_info.minor}', tag)
PY
)
KEY="mmcv-${MMCV_VERSION}_torch${TORCH_V}_${PY_TAG}_${CUDA_OK}"
WHEEL_DIR=$CACHE/$KEY
wheel=$(ls "$WHEEL_DIR"/mmcv-*.whl 2>/dev/null | head -n1 || true)
if [[ -z $wheel ]]; then
  log "no cached mmcv wheel for $KEY: building mmcv $MMCV_VERSION with ops (about 20-40 minutes, once per machine)"
  build=$(mktemp -d "${TMPDIR:-/tmp}/vpetl_mmcv.XXXXXX")
  "${PIP[@]}" download -q --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$build/sdist"
  tar -xzf "$build"/sdist/mmcv-*.tar.gz -C "$build"
  src=$(ls -d "$build"/mmcv-"$MMCV_VERSION")
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  env_extra=()
  if [[ $CUDA_OK != cpu ]]; then env_extra=(FORCE_CUDA=1); fi
  (cd "$src" && env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${env_extra[@]}" \
     "${PIP[@]}" wheel . --no-build-isolation --no-deps -w "$build/out")
  mkdir -p "$CACHE"
  # publish atomically: a half-written cache entry must never look complete
  tmp_dir=$(mktemp -d "$CACHE/.partial.XXXXXX")
  cp "$build"/out/mmcv-*.whl "$tmp_dir/"
  rm -rf "$WHEEL_DIR"
  mv "$tmp_dir" "$WHEEL_DIR"
  rm -rf "$build"
  wheel=$(ls "$WHEEL_DIR"/mmcv-*.whl | head -n1)
fi
log "mmcv wheel: $wheel"

# --- everything else -----------------------------------------------------------------------------
log "installing the pinned stack"
"${PIP[@]}" install -q "$wheel" -r "$REQS"
"${PIP[@]}" install -q --no-deps -e "$ROOT"
"$PY" -c "import mmcv, mmcv.ops, mmengine, mmpretrain, mmseg, mmdet, timm; import vpetl_mm" \
  || { log "the stack installed but does not import"; exit 1; }
stamp_value > "$STAMP"
log "ready: $VENV"
