#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one go, with one report, most wanted first: a bf16
# training run of the shapes preset with its img/s and faithfulness scores; the ablation's
# recipe (fp32, batch 16) timed alone and as 4 processes sharing the GPU; the `gpu` test tier
# (bf16 autocast, channels_last, torch.compile, nccl when there are two GPUs); the training and
# serving benchmarks. The whole run keeps to XMC_GPU_BUDGET_S (default 540 s): a step that would
# overrun it is cut short or skipped, and the report says so. Never needed by tests or CI.
#
#   scripts/gpu_wheels.sh                  # on a connected machine: what the GPU image lacks -> .whl/
#   scripts/gpu_check.sh [OUT_DIR]         # on the GPU machine: writes OUT_DIR/gpu_report.md
#
# Settings: XMC_GPU_PRESET (the preset to train, default shapes-32-cpu), XMC_GPU_TRAIN_S (seconds
# of the bf16 run, default 150), XMC_GPU_RECIPE_S (seconds of each ablation-recipe timing, default
# 45), XMC_GPU_NUM (images scored per split, default 1000), XMC_GPU_DATA (train images generated,
# default 20000); XMC_GPU_DEVICE=cpu runs the same steps on the CPU (no GPU tests), to check the
# script itself where no GPU is at hand.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-report}}
mkdir -p "$out"
report="$out/gpu_report.md"
device=${XMC_GPU_DEVICE:-cuda}
preset=${XMC_GPU_PRESET:-shapes-32-cpu}
train_s=${XMC_GPU_TRAIN_S:-150}
recipe_s=${XMC_GPU_RECIPE_S:-45}
num=${XMC_GPU_NUM:-1000}
data_n=${XMC_GPU_DATA:-20000}
deadline=$((SECONDS + ${XMC_GPU_BUDGET_S:-540}))
work=$(mktemp -d)
data="$work/shapes32"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ "$device" = cpu ] && export CUDA_VISIBLE_DEVICES=""
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$work/site" .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:$work/site"
fi
# The ablation's recipe (docs/experiments/ablation.md), exactly: fp32, no channels_last, batch 16.
recipe=(--preset shapes-32-cpu --data "$data" --batch-size 16 --steps 1000000 --no-progress
        --set optim.lr_g=0.0002 --set optim.lr_d=0.0008 --set optim.ema_decay=0.999
        --set run.amp=off --set run.channels_last=off --set run.log_every=20
        --set run.checkpoint_every=100000)

step() {  # step TITLE SECONDS COMMAND...: run it within its limit and the deadline, keep its tail
    local title=$1 limit=$2 left=$((deadline - SECONDS))
    shift 2
    printf '\n## %s\n\n```\n$ %s\n' "$title" "$*"
    if [ "$left" -lt 10 ]; then
        printf 'skipped: the run budget is spent\n```\n'
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left && echo "(limit cut to the $left s left in the budget)"
    local start=$SECONDS
    if declare -F "$1" >/dev/null; then  # a function of this script bounds its own time
        "$@" >"$work/step.log" 2>&1
    else
        timeout "$limit" "$@" >"$work/step.log" 2>&1
    fi
    local status=$?
    tail -n 60 "$work/step.log"
    printf 'exit %s after %s s\n```\n' "$status" "$((SECONDS - start))"
}

rate() {  # rate RUN_DIR...: the img/s of each run's last log line, and their sum
    python3 - "$@" <<'EOF'
import json, sys
rates = []
for run in sys.argv[1:]:
    try:
        last = json.loads(open(f"{run}/stats.jsonl").read().splitlines()[-1])
    except (OSError, IndexError):
        print(f"{run}: no log line")
        continue
    rates.append(last["img_per_s"])
    print(f"{run}: step {last['step']}, {last['images']} images, {last['img_per_s']:.1f} img/s")
print(f"sum over {len(rates)} processes: {sum(rates):.1f} img/s")
EOF
}

recipe_runs() {  # recipe_runs N: N processes of the ablation's recipe for recipe_s seconds
    local pids=()
    for i in $(seq 1 "$1"); do
        timeout --signal=TERM "$recipe_s" python3 -m training.cli "$work/recipe$1-$i" \
            "${recipe[@]}" --seed "$i" >"$work/log-recipe$1-$i" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}"
    rate "$work"/recipe"$1"-*
}

{
    printf '# xmc GPU check, %s\n\n```\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
    python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPUs', torch.cuda.device_count())"
    git rev-parse --short HEAD 2>/dev/null || true
    printf '```\n'
    step "shapes benchmark data" 120 python3 -m training.shapes.scenes make "$data" \
        --size 32 --seed 0 --train "$data_n" --quiet --workers 8
    step "every caption reads kept MiniLM rows" 60 python3 scripts/gpu_minilm.py check "$data"
    step "train $preset for ${train_s} s (bf16 on a GPU)" "$((train_s + 60))" \
        timeout --signal=TERM "$train_s" python3 -m training.cli "$work/run" --preset "$preset" \
        --data "$data" --steps 1000000 --no-progress \
        --set optim.lr_g=0.0002 --set optim.lr_d=0.0008 --set optim.ema_decay=0.999 \
        --set run.log_every=100
    tail -n 2 "$work/run/stats.jsonl" 2>/dev/null
    step "export" 60 python3 -c "import sys; from training.cli import export_main; sys.exit(export_main(sys.argv[1:]))" \
        "$work/run" "$work/export"
    for split in val test_heldout; do
        step "faithfulness on $split" 120 python3 -m training.evaluate faithfulness \
            --model "$work/export" --data "$data" --split "$split" --num "$num" \
            --out "$work/eval" --quiet
    done
    step "the ablation's recipe (fp32, batch 16), one process, ${recipe_s} s" \
        "$((recipe_s + 60))" recipe_runs 1
    step "the same, 4 processes sharing the device, ${recipe_s} s each" \
        "$((recipe_s + 90))" recipe_runs 4
    if [ "$device" = cuda ]; then
        step "GPU tests" 300 python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider -rs \
            -p no:logging --tb=short  # no captured torch DEBUG lines to bury a failure
    fi
    step "training speed" 180 python3 -m benchmarks.train_speed --device "$device" --quick \
        --only throughput
    step "serving speed" 120 python3 -m benchmarks.serve_speed --device "$device" \
        --seconds 4 --rounds 1 --clients 1,64
} 2>&1 | tee "$report"
cp "$work"/run/stats.jsonl "$work"/eval/*.json "$work"/eval/*val_samples.png "$out/" 2>/dev/null || true
echo "report: $report"
