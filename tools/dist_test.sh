#!/usr/bin/env bash
# Distributed test with torchrun: tools/dist_test.sh CONFIG CHECKPOINT NPROC [options]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as for mmpretrain. Without CUDA the
# processes use the gloo backend (tools/test.py arranges it), so this also runs on a CPU machine.
set -e
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY=${PYTHON:-python}
[ -x "$ROOT/.venv/bin/python" ] && [ -z "${PYTHON:-}" ] && PY="$ROOT/.venv/bin/python"

PYTHONPATH="$ROOT":$PYTHONPATH \
"$PY" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$ROOT/tools/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
