# syntax=docker/dockerfile:1
# Pacer: the MCP server (the ControlService actions as tools for AI agents, over streamable HTTP).
# Build from the repository root (the build context); BuildKit reads mcp.Dockerfile.dockerignore beside this file:
#   docker build -f deploy/docker/mcp.Dockerfile -t ghcr.io/pacer/pacer-mcp:TAG .
# Both stages must use the same base image (pin it by digest for releases): the virtualenv is copied across.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY constraints.txt ./
COPY libs/common/ libs/common/
COPY services/mcp/ services/mcp/
# Wheels of the shared library and the service, installed into a virtualenv with the versions constraints.txt pins.
RUN python -m pip wheel --no-deps --wheel-dir /wheels libs/common services/mcp \
    && python -m venv /opt/pacer \
    && /opt/pacer/bin/pip install --constraint constraints.txt /wheels/*.whl \
    && /opt/pacer/bin/pip uninstall --yes pip

FROM python:3.11-slim
# Numeric user and group 10001, as the Kubernetes manifests expect (runAsUser: 10001). The root filesystem may be
# read-only: bytecode was compiled at install time, and state goes to PACER_VAR_DIR (an emptyDir in Kubernetes).
RUN groupadd --system --gid 10001 pacer \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/pacer \
        --shell /usr/sbin/nologin pacer \
    && install --directory --owner=10001 --group=10001 --mode=0750 /var/lib/pacer
COPY --from=builder /opt/pacer /opt/pacer
ENV PATH=/opt/pacer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PACER_VAR_DIR=/var/lib/pacer \
    PACER_MCP_ADDR=0.0.0.0:8765 \
    PACER_METRICS_ADDR=0.0.0.0:9468
WORKDIR /var/lib/pacer
USER 10001:10001
EXPOSE 8765 9468
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/pacer/bin/pacer-mcp"]
CMD ["--transport", "http"]
