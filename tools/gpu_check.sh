#!/usr/bin/env bash
# The GPU checks and the GPU columns of the README's tables, on a machine with a CUDA GPU.
#
#   bash tools/gpu_check.sh [OUT_DIR]        (default: work_dirs/gpu_check)
#
# 1. the CUDA-marked tests (tests/test_cuda.py): folded == unfolded in fp32 and fp16, one AMP
#    Mask R-CNN T2 training iteration at 1333x800 (batch 2) and one Semantic FPN T2 iteration
#    at 512x512, each with its peak memory -> OUT_DIR/cuda_tests.jsonl and cuda_tests.log;
# 2. inference: every classifier, batch 64, fused, fp32 and AMP -> OUT_DIR/inference_*.md;
# 3. training step, naive vs ours, every classifier at batch 64 and the T2 backbone at
#    800x1280 (batch 2, also with_cp), fp32 and AMP -> OUT_DIR/training_*.md.
# Run it inside the project's environment (tools/setup_env.sh with your torch/CUDA pair).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/work_dirs/gpu_check}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
cd "$ROOT"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else
          "gpu_check.sh: no CUDA GPU visible to torch (torch.cuda.is_available() is False)")'
"$PY" -c 'import torch; print(torch.cuda.get_device_name(), torch.__version__)' | tee "$OUT/device.txt"

rm -f "$OUT/cuda_tests.jsonl"
PARTIALNET_GPU_RESULTS="$OUT/cuda_tests.jsonl" "$PY" -m pytest tests/test_cuda.py -m cuda -q -s \
  2>&1 | tee "$OUT/cuda_tests.log"

ARCHS=(t0 t1 t2 s m l)
for precision in fp32 amp; do
  flag=(); [ "$precision" = amp ] && flag=(--amp)
  "$PY" tools/benchmark.py --arch "${ARCHS[@]}" --kind classifier --fuse --batch-size 64 \
    --device cuda "${flag[@]}" | tee "$OUT/inference_$precision.md"
  "$PY" tools/benchmark.py --train --arch "${ARCHS[@]}" --kind classifier --batch-size 64 \
    --device cuda --runs 10 --warmup 3 "${flag[@]}" | tee "$OUT/training_classifiers_$precision.md"
  "$PY" tools/benchmark.py --train --with-cp --arch t2 --shape 800 1280 --batch-size 2 \
    --device cuda --runs 10 --warmup 3 "${flag[@]}" | tee "$OUT/training_t2_detection_$precision.md"
done
echo "gpu_check.sh: results in $OUT"
