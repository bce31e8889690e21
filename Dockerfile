# Atelier: the Discord bot and its GPU worker processes in one image.
#
#   docker compose up -d --build        (see compose.yaml; scripts/start --docker does it all)
#
# Base: python:3.11-slim, the Python the tests run on. The CUDA build of torch carries its own
# CUDA runtime, cuBLAS and cuDNN as pip packages (nvidia-*), so an nvidia/cuda base image would
# only add a second, unused copy of them (~3 GB). The host's NVIDIA driver is mounted in at run
# time by the NVIDIA Container Toolkit for the GPUs compose reserves; the NVIDIA_* variables
# below ask it for the compute libraries.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# Keep TORCH_VERSION equal to the Makefile's (tests/test_packaging.py checks it).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV PATH=/opt/atelier/bin:$PATH
RUN python -m venv /opt/atelier \
    && pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
WORKDIR /src
# The project and its dependencies come from the same pyproject.toml the tests use; torch is
# already installed, so pip keeps the CUDA build.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY generation ./generation
COPY storage ./storage
# ATELIER_EXTRAS=ray adds Ray, for GPUs on other machines (README: "GPUs on other machines (Ray)"):
# `docker compose build --build-arg ATELIER_EXTRAS=ray`; scripts/start --docker passes it when
# atelier.toml uses Ray. Empty: the project alone. (DL3013 asks for a pinned version: this is
# the project itself, whose pyproject.toml pins what needs pinning, Ray among them.)
ARG ATELIER_EXTRAS=""
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".${ATELIER_EXTRAS:+[$ATELIER_EXTRAS]}"

FROM python:${PYTHON_VERSION}-slim-bookworm
ENV PATH=/opt/atelier/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    ATELIER_CONFIG=/atelier/atelier.toml \
    HF_HOME=/cache/huggingface \
    TORCHINDUCTOR_CACHE_DIR=/cache/inductor
RUN useradd --no-log-init --create-home --uid 10001 --user-group atelier \
    && mkdir -p /atelier/data /cache/huggingface /cache/inductor \
    && chown -R atelier:atelier /atelier /cache
COPY --from=build /opt/atelier /opt/atelier
USER 10001:10001
WORKDIR /atelier
# The database and images (data), and downloaded models plus compiled kernels (cache).
VOLUME ["/atelier/data", "/cache"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-m", "bot.observability"]
ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
