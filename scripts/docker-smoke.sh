#!/usr/bin/env bash
# Build the project's real Dockerfile without a Docker engine and run the image it makes.
#
#   1. a local base image: debootstrap a Debian with Python into a buildah scratch container, add
#      this machine's CA bundle and a pip.conf naming it (PyPI may sit behind a TLS-inspecting
#      proxy), commit it;
#   2. `buildah bud --isolation chroot` of ./Dockerfile with BASE_IMAGE set to that base and
#      torch taken from a CPU wheel on a build-time mount (the only differences from a user build);
#   3. `buildah run` of the image's own CMD with API keys set; wait for /health/ready; run the
#      image's HEALTHCHECK command; check that a request without a key gets 401 and that a caption
#      POSTed with the key comes back as a PNG;
#   4. the same with a tiny artifact (written by the image's own models.testing) mounted
#      read-only at /models (XMC_MODEL_DIR=/models), checking that the service loaded it.
#
# Needs root, buildah, debootstrap, curl and python3 (with torch, unless XMC_SMOKE_TORCH_WHEEL is set).
# Idempotent: the base image and the build's layer cache are reused across runs; containers are
# removed on exit. Exit status 0 only when every check passed.
#
# Environment (all optional):
#   XMC_SMOKE_WORK=/var/tmp/xmc-docker-smoke  scratch folder (rootfs, wheels, logs, the PNGs)
#   XMC_SMOKE_FRESH=1                         rebuild the base and build without the layer cache
#   XMC_SMOKE_TORCH_WHEEL=/path/torch-*.whl   torch wheel for the image (default: pip download of
#                                             the host's torch version for the base's Python)
#   XMC_SMOKE_MIRROR=http://deb.debian.org/debian   Debian mirror for debootstrap
#   XMC_SMOKE_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
#   XMC_SMOKE_READY_TIMEOUT_S=300             how long the service may take to turn ready
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${XMC_SMOKE_WORK:-/var/tmp/xmc-docker-smoke}"
FRESH="${XMC_SMOKE_FRESH:-0}"
MIRROR="${XMC_SMOKE_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${XMC_SMOKE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
READY_TIMEOUT_S="${XMC_SMOKE_READY_TIMEOUT_S:-300}"
SUITE=bookworm          # Debian 12: Python 3.11, the Python of the torch wheel used here
BASE_PYTHON=3.11
BASE_IMAGE="localhost/xmc-smoke-base:${SUITE}"
IMAGE="localhost/xmc:smoke"
WHEEL_MOUNT=/opt/smoke-wheels
URL="http://127.0.0.1:8000"  # the image's CMD binds port 8000; chroot isolation shares the host network
API_KEY="smoke-key-$$"
CAPTION="a red circle above a blue square"
CONTAINERS=(xmc-smoke-base-import xmc-smoke-serve xmc-smoke-health)
SERVER_PID=""
READY_BODY=""

step() { printf '\n==> [%4ss] %s\n' "$SECONDS" "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf '\ndocker-smoke: FAILED: %s\n' "$*" >&2; exit 1; }

remove_containers() {
    local name
    for name in "${CONTAINERS[@]}"; do
        buildah rm "$name" >/dev/null 2>&1 || true
    done
}

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

cleanup() {
    stop_server
    remove_containers
}
trap cleanup EXIT
trap 'die "interrupted"' INT TERM

preflight() {
    step "preflight"
    [[ "$(id -u)" == 0 ]] || die "run as root (buildah's chroot isolation and debootstrap need it)"
    local tool
    for tool in buildah debootstrap curl python3; do
        command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y buildah debootstrap curl)"
    done
    [[ -f "$CA_BUNDLE" ]] || die "CA bundle $CA_BUNDLE not found (set XMC_SMOKE_CA_BUNDLE)"
    if curl -s -o /dev/null -m 2 "$URL/"; then
        die "something already answers on $URL; stop it first"
    fi
    mkdir -p "$WORK"
    remove_containers
    info "repo $REPO, work $WORK, $(buildah --version)"
}

torch_wheel() {
    step "torch wheel for the build"
    mkdir -p "$WORK/wheels"
    if [[ -n "${XMC_SMOKE_TORCH_WHEEL:-}" ]]; then
        [[ -f "$XMC_SMOKE_TORCH_WHEEL" ]] || die "XMC_SMOKE_TORCH_WHEEL=$XMC_SMOKE_TORCH_WHEEL: no such file"
        cp -u "$XMC_SMOKE_TORCH_WHEEL" "$WORK/wheels/"
        WHEEL="$(basename "$XMC_SMOKE_TORCH_WHEEL")"
    else
        local version
        version="$(python3 -c 'import importlib.metadata as m; print(m.version("torch"))')"
        info "host torch $version; pip download for Python $BASE_PYTHON"
        python3 -m pip download --quiet --no-deps --only-binary=:all: \
            --python-version "$BASE_PYTHON" --implementation cp \
            --platform "manylinux_2_28_$(uname -m)" -d "$WORK/wheels" "torch==$version" \
            || die "pip could not find torch==$version for Python $BASE_PYTHON; set XMC_SMOKE_TORCH_WHEEL"
        WHEEL="$(cd "$WORK/wheels" && compgen -G "torch-$version-cp${BASE_PYTHON/./}-*.whl" | head -n 1)" \
            || die "pip download left no torch-$version wheel in $WORK/wheels"
    fi
    info "$WHEEL ($(du -h "$WORK/wheels/$WHEEL" | cut -f1))"
}

base_image() {
    if [[ "$FRESH" != 1 ]] && buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
        step "base image $BASE_IMAGE: reusing (XMC_SMOKE_FRESH=1 rebuilds it)"
        return
    fi
    step "base image $BASE_IMAGE: debootstrap $SUITE with Python"
    # debootstrap writes straight into a mounted scratch container: no tarball, no copy.
    buildah from --name xmc-smoke-base-import scratch >/dev/null
    local rootfs
    rootfs="$(buildah mount xmc-smoke-base-import)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 20 "$WORK/debootstrap.log"; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
    # This machine's CA bundle, in a file of its own that update-ca-certificates never rewrites.
    install -m 0644 "$CA_BUNDLE" "$rootfs/etc/ssl/smoke-ca-bundle.crt"
    printf '[global]\ncert = /etc/ssl/smoke-ca-bundle.crt\n' >"$rootfs/etc/pip.conf"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    buildah umount xmc-smoke-base-import >/dev/null
    step "base image $BASE_IMAGE: commit"
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd '["/bin/bash"]' xmc-smoke-base-import
    buildah rmi "$BASE_IMAGE" >/dev/null 2>&1 || true
    buildah commit --quiet --rm xmc-smoke-base-import "$BASE_IMAGE" >/dev/null
    info "$(buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$BASE_IMAGE")"
}

build_image() {
    step "buildah bud of $REPO/Dockerfile -> $IMAGE"
    local cache=()
    [[ "$FRESH" == 1 ]] && cache=(--no-cache)
    buildah bud --isolation chroot --format docker --layers --force-rm "${cache[@]}" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "TORCH_REQUIREMENT=$WHEEL_MOUNT/$WHEEL" \
        --volume "$WORK/wheels:$WHEEL_MOUNT:ro" \
        -f "$REPO/Dockerfile" -t "$IMAGE" "$REPO" 2>&1 | tee "$WORK/build.log" \
        || die "build failed (log: $WORK/build.log)"
    info "$(buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE")"
}

# Fields of the image's Docker config: prints them NUL-separated for readarray.
image_config() {
    buildah inspect --type image "$IMAGE" | python3 -c '
import json, sys
config = json.load(sys.stdin)["Docker"]["config"]
field = sys.argv[1]
if field == "Cmd":
    values = config.get("Cmd") or []
elif field == "Healthcheck":
    test = (config.get("Healthcheck") or {}).get("Test") or []
    values = test[1:] if test[:1] == ["CMD"] else []
else:
    values = [str(config.get(field) or "")]
sys.stdout.write("".join(value + "\0" for value in values))
' "$1"
}

check_image_config() {
    step "image configuration"
    local user cmd health
    readarray -d '' user < <(image_config User)
    readarray -d '' cmd < <(image_config Cmd)
    readarray -d '' health < <(image_config Healthcheck)
    info "User=${user[0]}  Cmd=${cmd[*]}"
    info "Healthcheck=${health[*]}"
    [[ "${user[0]}" =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] || die "image user '${user[0]}' is not a numeric non-root id"
    [[ "${#cmd[@]}" -gt 0 && "${cmd[0]}" == xmc-serve ]] || die "image CMD does not run xmc-serve"
    [[ "${#health[@]}" -gt 0 ]] || die "image has no exec-form HEALTHCHECK (was it built with --format docker?)"
}

# Start the image's own CMD in a fresh container; extra buildah-run options in "$@".
start_server() {
    local cmd
    readarray -d '' cmd < <(image_config Cmd)
    buildah rm xmc-smoke-serve >/dev/null 2>&1 || true
    buildah from --name xmc-smoke-serve "$IMAGE" >/dev/null
    info "buildah run $* -- ${cmd[*]}"
    setsid buildah run --isolation chroot "$@" xmc-smoke-serve -- "${cmd[@]}" \
        >"$WORK/serve.log" 2>&1 &
    SERVER_PID=$!
}

wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT_S)) start=$SECONDS
    until curl -fs -o /dev/null -m 5 "$URL/health/ready"; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            tail -n 30 "$WORK/serve.log"
            die "the service exited before it was ready (log: $WORK/serve.log)"
        fi
        if ((SECONDS > deadline)); then
            tail -n 30 "$WORK/serve.log"
            die "not ready after ${READY_TIMEOUT_S}s (log: $WORK/serve.log)"
        fi
        sleep 1
    done
    READY_BODY="$(curl -fs -m 5 "$URL/health/ready")"
    info "ready after $((SECONDS - start))s: $READY_BODY"
}

run_healthcheck() {
    local health
    readarray -d '' health < <(image_config Healthcheck)
    buildah rm xmc-smoke-health >/dev/null 2>&1 || true
    buildah from --name xmc-smoke-health "$IMAGE" >/dev/null
    buildah run --isolation chroot xmc-smoke-health -- "${health[@]}" \
        || die "the image's HEALTHCHECK command failed against the running service"
    buildah rm xmc-smoke-health >/dev/null
    info "the image's HEALTHCHECK command exits 0"
}

# POST a caption; $1: file for the PNG, $2...: extra curl arguments. Checks the PNG's header.
generate_png() {
    local out="$1" status
    shift
    status="$(curl -s -m 120 -o "$WORK/response.json" -w '%{http_code}' "$@" \
        -H 'Content-Type: application/json' \
        -d "{\"prompt\": \"$CAPTION\", \"response_format\": \"b64_json\"}" \
        "$URL/v1/images/generations")"
    [[ "$status" == 200 ]] || { head -c 500 "$WORK/response.json"; echo; die "generation answered HTTP $status"; }
    python3 - "$WORK/response.json" "$out" <<'PY' || die "the response is not a PNG image"
import base64, json, struct, sys
body = json.load(open(sys.argv[1]))
png = base64.b64decode(body["data"][0]["b64_json"])
assert png[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
assert png[12:16] == b"IHDR", "no IHDR chunk"
width, height = struct.unpack(">II", png[16:24])
assert width > 0 and height > 0, "empty image"
open(sys.argv[2], "wb").write(png)
print(f"    PNG {width}x{height}, {len(png)} bytes -> {sys.argv[2]}")
PY
}

smoke_bundled() {
    step "run the image's CMD (bundled model, XMC_API_KEYS set)"
    start_server --env "XMC_API_KEYS=$API_KEY"
    wait_ready
    run_healthcheck
    local status
    status="$(curl -s -m 30 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "{\"prompt\": \"$CAPTION\"}" "$URL/v1/images/generations")"
    [[ "$status" == 401 ]] || die "a request without an API key answered HTTP $status, not 401"
    info "no API key: HTTP 401"
    generate_png "$WORK/bundled.png" -H "Authorization: Bearer $API_KEY"
    stop_server
}

smoke_mounted() {
    step "run the image's CMD with an artifact mounted read-only at /models"
    rm -rf "$WORK/tiny-artifact"
    mkdir -p "$WORK/tiny-artifact"
    buildah rm xmc-smoke-health >/dev/null 2>&1 || true
    buildah from --name xmc-smoke-health "$IMAGE" >/dev/null
    buildah run --isolation chroot --user 0:0 --volume "$WORK/tiny-artifact:/out" xmc-smoke-health -- \
        python -c "from models.testing import make_tiny_artifact; make_tiny_artifact('/out')" \
        || die "the image could not write a tiny artifact"
    buildah rm xmc-smoke-health >/dev/null
    # A model id of its own, so that the service's answer shows which artifact it loaded.
    local model_id="smoke-mounted-$$"
    python3 - "$WORK/tiny-artifact/config.json" "$model_id" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["model_id"] = sys.argv[2]
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
    # As docs/deployment.md tells users: the image's user (uid 10001) must be able to read it.
    chmod -R a+rX "$WORK/tiny-artifact"
    start_server --volume "$WORK/tiny-artifact:/models:ro" --env XMC_MODEL_DIR=/models
    wait_ready
    python3 -c 'import json, sys; assert json.loads(sys.argv[1])["model"] == sys.argv[2]' \
        "$READY_BODY" "$model_id" || die "the service did not load the artifact mounted at /models"
    info "serving the mounted artifact ($model_id)"
    generate_png "$WORK/mounted.png"
    stop_server
}

main() {
    preflight
    torch_wheel
    base_image
    build_image
    check_image_config
    smoke_bundled
    smoke_mounted
    step "docker-smoke: PASSED in ${SECONDS}s"
}

main "$@"
