#!/usr/bin/env bash
# The tracker's GPU checks in one go (about 4 minutes on an H100): the CUDA tests and the GPU
# benchmark rows, written under OUT_DIR.
#
#   benchmarks/track_gpu_check.sh OUT_DIR
#
# OUT_DIR/cuda_tests.txt     pytest -k cuda over the tracker tests (CUDA graph = eager boxes, GPU = CPU
#                            boxes, batched = alone, fp16 close to fp32, the tool on the GPU)
# OUT_DIR/track_gpu.md       batch-1 full step with CUDA graphs vs eager vs OSTrack's own network (when
# OUT_DIR/track_gpu.json     ../shared/peers or $LITEVIT_SHARED/peers is there), batched network
# OUT_DIR/track_gpu.png      frames/s (1 to 128), end to end over generated 1280x720 JPEG sequences
#                            (single stream vs 32 and 64 at once) with where the time goes
# OUT_DIR/environment.txt    GPU, driver, torch
#
# Environment: PYTHON (default python3), DEVICE (default cuda; cpu runs the same steps small, to
# check the script itself), BATCHES / FRAMES (network rows), E2E_BATCHES / E2E_SEQUENCES / E2E_FRAMES /
# DECODE_THREADS to resize the run.
set -u
OUT=${1:?usage: benchmarks/track_gpu_check.sh OUT_DIR}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
cores=$(nproc)
if [ "$DEVICE" = cpu ]; then
    batches="1 4"; e2e_batches="4"; frames=6; sequences=${E2E_SEQUENCES:-4}; length=${E2E_FRAMES:-8}
else
    batches="1 8 32 128"; e2e_batches="32 64"; frames=60; sequences=${E2E_SEQUENCES:-64}; length=${E2E_FRAMES:-64}
fi
batches=${BATCHES:-$batches}; e2e_batches=${E2E_BATCHES:-$e2e_batches}; frames=${FRAMES:-$frames}
decode=${DECODE_THREADS:-$(( cores > 4 ? cores - 4 : 1 ))}
status=0

{
    date
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
    "$PYTHON" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'devices', torch.cuda.device_count())"
    echo "cores $cores, decode threads $decode"
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

start=$(date +%s)
"$PYTHON" -m pytest tests/test_tracker_runtime.py tests/test_tracker.py tests/test_tracker_batched.py -k cuda \
    -q -rs --junitxml "$OUT/cuda_tests.xml" > "$OUT/cuda_tests.txt" 2>&1 || status=1
tail -n 15 "$OUT/cuda_tests.txt"
echo "cuda tests: $(( $(date +%s) - start )) s"

start=$(date +%s)
# shellcheck disable=SC2086
"$PYTHON" -m benchmarks.track_speed --device "$DEVICE" --batch $batches --frames "$frames" --threads 4 \
    --end-to-end --e2e-batch $e2e_batches --e2e-sequences "$sequences" --e2e-frames "$length" \
    --e2e-data "${TMPDIR:-/tmp}/litevit_track_e2e_$DEVICE" --decode-threads "$decode" \
    --json "$OUT/track_gpu.json" --markdown "$OUT/track_gpu.md" --plot "$OUT/track_gpu.png" \
    > "$OUT/track_gpu.log" 2>&1 || status=1
tail -n 60 "$OUT/track_gpu.md" 2>/dev/null || tail -n 40 "$OUT/track_gpu.log"
echo "benchmark: $(( $(date +%s) - start )) s"
exit $status
