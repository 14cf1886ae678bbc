#!/usr/bin/env bash
# The GPU check, in one call of under 10 minutes on a machine with one NVIDIA GPU (run from the repository root with
# the project installed, e.g. `pip install torch && pip install -e ".[test]"` there):
#   1. the test suite's CUDA tests and the CLI on cuda,
#   2. the training step's speed against the GPU's matmul peak (seqimpute bench, fp32 and bf16),
#   3. the pretrained cells (benchmarks/pretrain.py MODELS) trained for 2 minutes each on the GPU, with their
#      validation curves.
# Everything lands in ${OUT:-results/gpu}/ with the device named in each JSON (bench records torch's device name).
# MNIST must be in the data cache ($SEQIMPUTE_DATA, default ~/.cache/seqimpute): a machine without network gets a
# copy of that folder.
#     bash benchmarks/gpu.sh
set -euo pipefail
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/device.csv"
python -c "import torch, json; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'device': torch.cuda.get_device_name(0)}))" > "$OUT/torch.json"

# 1. CUDA tests (the rest of the suite runs on every CI machine)
timeout 120 python -m pytest -q -p no:cacheprovider tests/test_masks.py -k cuda 2>&1 | tail -3 | tee "$OUT/tests.txt"
timeout 120 python - <<'PY' 2>&1 | tee -a "$OUT/tests.txt"
import numpy as np
from seqimpute import SequentialImputer
X = np.random.default_rng(0).normal(size=(300, 6)); X[np.random.default_rng(1).random(X.shape) < 0.2] = np.nan
imp = SequentialImputer(device="cuda", random_state=0, max_updates=50).fit(X)
print("SequentialImputer on cuda:", imp.transform(X).shape, "precision resolved:", imp.precision)
PY

# 2. the step against the matmul peak, at the paper's MNIST sizes and at the recipe's
for p in fp32 bf16; do
  timeout 120 seqimpute bench --device cuda --model gpsi-add --model lstm-add --precision $p --json "$OUT/bench-$p.json"
  timeout 60 seqimpute bench --device cuda --model gpsi-add --precision $p --set hidden=500 --set steps=6 \
    --json "$OUT/bench-recipe-$p.json"
done

# 3. the pretrained cells, 2 minutes each on the GPU (the validation curve shows the learning per second there)
for name in gpsi-add-mnist-mcar gpsi-add-mnist-mar; do
  mask=$(python -c "import sys; sys.path.insert(0, 'benchmarks'); import pretrain; print(pretrain.MODELS['$name']['mask'])")
  timeout 170 seqimpute train --model gpsi-add --data mnist --mask "$mask" --run "$OUT/runs/$name" --minutes 2 \
    --device cuda --set hidden=500 --set steps=6 --set lr=2e-3 --batch 250 --set valid_every=500 --quiet
  cp "$OUT/runs/$name/metrics.jsonl" "$OUT/$name-metrics.jsonl"
  rm -f "$OUT/runs/$name"/*.pt  # the weights stay on the GPU machine; the curves come back
done
echo "wrote $OUT"
