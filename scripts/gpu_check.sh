#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one go, with one report: the `gpu` test tier (bf16
# autocast, channels_last, torch.compile, nccl when there are two GPUs), the training and serving
# benchmarks, and a short bf16 training run of the shapes preset with its faithfulness score.
# About 8 minutes on one H200. Never needed by the default tests or CI.
#
#   scripts/gpu_wheels.sh                  # on a connected machine: what the GPU image lacks -> .whl/
#   scripts/gpu_check.sh [OUT_DIR]         # on the GPU machine: writes OUT_DIR/gpu_report.md
#
# Settings: XMC_GPU_PRESET (the preset to train, default shapes-32-cpu), XMC_GPU_TRAIN_S (training
# seconds, default 150), XMC_GPU_NUM (images scored per split, default 1000), XMC_GPU_DATA (train
# images generated, default 20000); XMC_GPU_DEVICE=cpu runs the same steps on the CPU (no GPU
# tests), to check the script itself where no GPU is at hand.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-report}}
mkdir -p "$out"
report="$out/gpu_report.md"
device=${XMC_GPU_DEVICE:-cuda}
preset=${XMC_GPU_PRESET:-shapes-32-cpu}
train_s=${XMC_GPU_TRAIN_S:-150}
num=${XMC_GPU_NUM:-1000}
data_n=${XMC_GPU_DATA:-20000}
work=$(mktemp -d)
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$work/site" .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:$work/site"
fi

step() {  # step TITLE SECONDS COMMAND...: run it under a time limit, keep the tail of its output
    local title=$1 limit=$2
    shift 2
    printf '\n## %s\n\n```\n$ %s\n' "$title" "$*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$work/step.log" 2>&1
    local status=$?
    tail -n 80 "$work/step.log"
    printf 'exit %s after %s s\n```\n' "$status" "$((SECONDS - start))"
}

{
    printf '# xmc GPU check, %s\n\n```\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
    python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPUs', torch.cuda.device_count())"
    git rev-parse --short HEAD 2>/dev/null || true
    printf '```\n'
    if [ "$device" = cuda ]; then
        step "GPU tests" 300 python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider -rs
    fi
    step "training speed" 180 python3 -m benchmarks.train_speed --device "$device" --quick \
        --only throughput
    step "serving speed" 120 python3 -m benchmarks.serve_speed --device "$device" \
        --seconds 4 --rounds 1 --clients 1,64
    step "shapes benchmark data" 120 python3 -m training.shapes.scenes make "$work/shapes32" \
        --size 32 --seed 0 --train "$data_n" --quiet
    step "train $preset for ${train_s} s (bf16 on a GPU)" "$((train_s + 60))" \
        timeout --signal=TERM "$train_s" python3 -m training.cli "$work/run" --preset "$preset" \
        --data "$work/shapes32" --steps 1000000 --no-progress
    tail -n 3 "$work/run/stats.jsonl" 2>/dev/null
    step "export" 60 python3 -c "import sys; from training.cli import export_main; sys.exit(export_main(sys.argv[1:]))" \
        "$work/run" "$work/export"
    for split in val test_heldout; do
        step "faithfulness on $split" 150 python3 -m training.evaluate faithfulness \
            --model "$work/export" --data "$work/shapes32" --split "$split" --num "$num" \
            --out "$work/eval"
    done
} 2>&1 | tee "$report"
cp "$work"/run/stats.jsonl "$out/" 2>/dev/null || true
echo "report: $report"
