# xmc-serve, the XMC-GAN text-to-image HTTP service.
#
#   GPU (default):  docker build -t xmc .
#                   docker run --gpus all -p 8000:8000 xmc
#   CPU variant:    docker build -t xmc:cpu --build-arg BASE_IMAGE=ubuntu:24.04 \
#                     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#   Your artifact:  docker run ... -v "$PWD/artifact:/models:ro" -e XMC_MODEL_DIR=/models xmc
#
# See docs/deployment.md. scripts/docker-smoke.sh builds and runs this very file with buildah.

# The CUDA "base" flavour carries the CUDA runtime and the NVIDIA container settings; the torch
# wheel brings its own cuBLAS/cuDNN, so the larger "runtime" flavour would only duplicate them.
# CUDA 13.0 matches the default torch 2.13.0 wheel on PyPI (host driver >= 580).
ARG BASE_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# python: the interpreter, an empty virtual environment and the service's numeric user.
FROM ${BASE_IMAGE} AS python

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Package versions are pinned by the base image's tag (its distribution release).
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 xmc \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/xmc --create-home \
        --shell /usr/sbin/nologin xmc \
    && mkdir -p /models \
    && python3 -m venv /opt/venv

# ---------------------------------------------------------------------------------------------
# requirements: the dependencies listed in pyproject.toml, as a requirements file, and the lock
# that pins each at the version CI tested.
FROM python AS requirements
COPY pyproject.toml requirements.lock /tmp/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /requirements.txt \
    && cp /tmp/requirements.lock /requirements.lock

# ---------------------------------------------------------------------------------------------
# project: the project installed under /install with the venv's layout (models/bundled/ travels
# inside as package data), to be copied over /opt/venv.
FROM python AS project
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models ./models
COPY training ./training
COPY xmc_service ./xmc_service
RUN pip install --no-cache-dir --no-deps --prefix /install .

# ---------------------------------------------------------------------------------------------
# runtime: torch, then the other dependencies, then the project; each its own layer, so that a
# code change rebuilds only the last, small one.
FROM python AS runtime

# A requirement for pip: a version pin, or a wheel path on a build-time mount (the smoke test).
ARG TORCH_REQUIREMENT=torch==2.13.0
# Empty: PyPI (CUDA wheels). https://download.pytorch.org/whl/cpu for the CPU variant.
ARG TORCH_INDEX_URL=""

# The pin is TORCH_REQUIREMENT's default, which hadolint cannot see through the variable.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
        "$TORCH_REQUIREMENT"

# The torch just installed is held fixed while the rest installs at the lock's versions.
COPY --from=requirements /requirements.txt /requirements.lock /tmp/
RUN python -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" > /tmp/constraints.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/requirements.lock -c /tmp/constraints.txt \
    && rm /tmp/requirements.txt /tmp/requirements.lock /tmp/constraints.txt

COPY --from=project /install/ /opt/venv/
RUN python -c "import torch, models.pipeline as p; assert (p.BUNDLED_DIR / 'config.json').is_file(), 'bundled model missing'; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

# Nothing is fetched at run time: the text encoder's weights ship in a pip package.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    XMC_DEVICE=auto

USER 10001:10001
WORKDIR /home/xmc
EXPOSE 8000

# /health/live answers once the server is up; loading the model and warming up precede that.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4).status != 200)"]

CMD ["xmc-serve", "--host", "0.0.0.0", "--port", "8000"]
