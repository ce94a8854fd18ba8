# syntax=docker/dockerfile:1
#
# jetexec — one image for every stage worker. Each container runs `jetexec worker NAME`
# (compose: `command: ["worker", "split"]`; Kubernetes: `args: ["worker", "split"]`).
#
# * multi-stage: the build stage creates a virtualenv and `pip install .` from pyproject.toml;
#   the runtime stage copies only that virtualenv — no compiler, no pip cache, no source tree.
# * pinned base: an exact Python patch version on an exact Debian release (bump deliberately).
# * non-root: uid/gid 10001, no home, no shell; the root filesystem can be mounted read-only
#   (the workers write nothing to disk; Python bytecode is not written at run time).
# * no secrets: NATS credentials arrive at run time through JETEXEC_NATS_* environment variables
#   or mounted files (JETEXEC_NATS_CREDS / JETEXEC_NATS_NKEY_SEED / JETEXEC_NATS_TLS_*).
#
#   docker build -t jetexec:0.1.0 .
#   docker run --rm jetexec:0.1.0 --help

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- build -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/jetexec
WORKDIR /src
# Only what the wheel needs: every package pyproject.toml installs (bench/ too: `jetexec bench`
# runs in the image). tests/deploy/test_manifests.py builds from the same paths.
COPY pyproject.toml ./
COPY jetexec ./jetexec
COPY schemas ./schemas
COPY bus ./bus
COPY core ./core
COPY workers ./workers
COPY bench ./bench
RUN /opt/jetexec/bin/pip install . \
 && /opt/jetexec/bin/python -m compileall -q /opt/jetexec/lib

# ---- runtime -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="jetexec" \
      org.opencontainers.image.description="Order-execution pipeline: stage workers on NATS JetStream" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 jetexec \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin jetexec
COPY --from=build /opt/jetexec /opt/jetexec
ENV PATH=/opt/jetexec/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    JETEXEC_METRICS_PORT=9464
WORKDIR /tmp
USER 10001:10001
# /metrics, /healthz, /readyz
EXPOSE 9464
ENTRYPOINT ["jetexec"]
CMD ["worker", "gateway"]
