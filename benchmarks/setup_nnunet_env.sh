#!/usr/bin/env bash
# Makes benchmarks/.venv-nnunet: nnU-Net v2 from the package registry, torch pinned to the local CPU build
# (an unpinned install pulls several GB of CUDA packages). Git-ignored; segforge never imports it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv-nnunet"
echo "torch==2.13.0" > "$here/.venv-nnunet/constraints.txt"
"$here/.venv-nnunet/bin/pip" install -q torch==2.13.0
"$here/.venv-nnunet/bin/pip" install -q -c "$here/.venv-nnunet/constraints.txt" nnunetv2
"$here/.venv-nnunet/bin/python" -c "import nnunetv2, torch; print('nnU-Net v2 ready, torch', torch.__version__)"
