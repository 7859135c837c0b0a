#!/usr/bin/env bash
# One arm of the two-object experiment (docs/experiments/two-objects.md), trained 100k images
# (6,250 steps of 16) at a time up to 1M, a copy of the checkpoint kept at each milestone in
# $ARMS/NAME-milestones/ for `python -m benchmarks.arms score`. Re-running it resumes.
#
#   scripts/two_object_arms.sh NAME [CAPTION_PATHS]     e.g.  head sentence-head
#
# Every arm starts from the bundled model (since the fifth session of 2026-12-07 the words-shapes-polish
# arm, whose G has the words paths: an arm from it names them, or starts from the bundle of
# 273c423 as INIT_G) with a fresh D that learns the relation (swap
# negatives weighted 4, CoordConv and a sentence head in D), as the w_swap arm of
# docs/experiments/cpu-preset.md; arms differ only in G's caption paths. It runs the code in
# $CODE, a frozen copy (`git archive COMMIT | tar -x -C $CODE`), so work on the tree does not
# change a run that lasts for days. Environment: ARMS (/var/tmp/xmc/arms), CODE
# (/var/tmp/xmc/code), DATA (/var/tmp/xmc/shapes32, from `xmc-shapes make DATA --size 32
# --seed 0`), THREADS (torch threads, 1); INIT_G and INIT_D (absolute paths) start a new run
# from a saved generator and D instead of the bundle and a fresh D: an arm's committed state
# (docs/experiments/two-objects-arms/NAME/{generator,discriminator}) after its machine is lost,
# or a fork of an arm at a milestone into a new arm; EXTRA (space-separated SECTION.FIELD=VALUE)
# adds switches to a new run, e.g. EXTRA="experiments.w_mismatch=1.0".
set -u
name=$1
paths=${2:-}
ARMS=${ARMS:-/var/tmp/xmc/arms}
CODE=${CODE:-/var/tmp/xmc/code}
DATA=${DATA:-/var/tmp/xmc/shapes32}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1}
run=$ARMS/$name
mkdir -p "$run-milestones"
cd "$CODE" || exit 1
sets=()
[ -n "${INIT_D:-}" ] && sets=(--set "run.init_discriminator=$INIT_D")
for set in ${EXTRA:-}; do sets+=(--set "$set"); done
for step in $(seq 6250 6250 62500); do
  milestone=$run-milestones/checkpoint-$(printf %07d "$step").pt
  [ -f "$milestone" ] && continue
  if [ -f "$run/config.json" ]; then
    nice -n 5 python -m training.cli "$run" --steps "$step" --num-workers 1 || exit 1
  else
    nice -n 5 python -m training.cli "$run" --preset shapes-32-cpu --data "$DATA" \
      --batch-size 16 --steps "$step" --num-workers 1 \
      --set optim.lr_g=0.0002 --set optim.lr_d=0.0008 --set optim.ema_decay=0.999 \
      --set "run.init_generator=${INIT_G:-models/bundled/default}" \
      --set experiments.swap_negatives=true --set experiments.d_coords=true \
      --set experiments.d_sentence_head=true --set experiments.w_swap=4.0 \
      --set "experiments.caption_paths=$paths" --set run.checkpoint_every=500 \
      "${sets[@]}" || exit 1
  fi
  done_at=$run/checkpoint-$(printf %07d "$step").pt
  [ -f "$done_at" ] || exit 0  # stopped before the milestone (Ctrl-C, SIGTERM): saved, resumable
  cp "$done_at" "$milestone"
  cp "$done_at.sha256" "$milestone.sha256"
done
