# The engine as a container: a slim Python image, the package installed from wheels built in a first
# stage, run as an unprivileged user. Mount the workspace (orchestrator.yaml, journeys/, templates/) at
# /workspace and pass secrets as environment variables:
#
#   docker build -t orchestrator .
#   docker run --rm -v "$PWD/shop:/workspace" -e ORCHESTRATOR_DB -e SMTP_PASSWORD orchestrator daemon
#   docker run --rm -v "$PWD/shop:/workspace" -e ORCHESTRATOR_DB -e ORCHESTRATOR_WRITE_KEY -p 8000:8000 \
#       orchestrator serve --host 0.0.0.0
#
# The default command is the daemon; any other command works the same way (serve, validate, status...).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/orchestrator orchestrator \
    && mkdir /workspace && chown orchestrator:orchestrator /workspace
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels orchestrator && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER orchestrator
WORKDIR /workspace
# Healthy while no journey has failed and ticks are not stale (see `orchestrator status`).
HEALTHCHECK --interval=1m --timeout=30s --start-period=2m CMD orchestrator status >/dev/null || exit 1
# The HTTP service (orchestrator serve --host 0.0.0.0) listens here.
EXPOSE 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["orchestrator"]
CMD ["daemon"]
