# syntax=docker/dockerfile:1
# One image for every role (workers, beat, Flower, release): only the command differs
# (docker-compose.yml, Procfile). Dependencies come from uv.lock, exactly as in development.
FROM python:3.11-slim

# uv from its official image, pinned to the version CI uses (.ci/run).
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1

WORKDIR /app

# DejaVu Sans is the report font (charts, PDF): without it they show only ASCII / Latin-1.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# Dependencies next, in their own layer: code changes do not reinstall them. Every wheel is
# binary (pycurl bundles libcurl, psycopg its libpq), so no compiler is needed.
COPY pyproject.toml uv.lock README.md ./
# The SQS extension's distribution is a workspace member (its code is taskapp/sqs, copied below).
COPY packages/taskapp-sqs/pyproject.toml packages/taskapp-sqs/README.md ./packages/taskapp-sqs/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-install-workspace

COPY config ./config
COPY taskapp ./taskapp
COPY docker ./docker
COPY Procfile ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups

# Never run as root: a task that is tricked into writing files cannot touch the image.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app taskapp \
    && mkdir -p /app/var \
    && chown taskapp /app/var
USER taskapp

# Without a command the image runs a worker on every queue; compose and the Procfile pick one.
CMD ["celery", "-A", "taskapp", "worker", "--loglevel=INFO"]
