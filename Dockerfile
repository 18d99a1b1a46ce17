# ChatPic: one image for every service. The command picks the service:
#   docker run ... chatpic:0.1.0 python -m services.<ingest|links|review|rooms|scanner>
# Build from the repository root:  docker build -t chatpic:0.1.0 .
#
# Stage 1 builds the virtualenv (a C++ compiler is needed: pdqhash has no wheel for every
# platform). Stage 2 is the slim runtime: the virtualenv, the code and nothing else; it runs as
# an unprivileged user with a fixed UID and can run with a read-only root filesystem.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml ./

# The runtime dependencies only (no dev, bench or local extras), read from pyproject.toml so the
# list lives in one place. The code itself is copied into the runtime stage, not installed.
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

# nudenet is installed only for the model file it ships (320n.onnx, the default NSFW model; see
# README, "The NSFW model"): its detector code, and OpenCV which it pulls in, are never imported.
RUN pip uninstall -y opencv-python-headless


FROM ${PYTHON_IMAGE} AS runtime

ARG CHATPIC_UID=10001
ARG CHATPIC_VERSION=0.1.0

LABEL org.opencontainers.image.title="chatpic" \
      org.opencontainers.image.description="ChatPic services (ingest, links, review, rooms, scanner)" \
      org.opencontainers.image.version="${CHATPIC_VERSION}"

# Production by default: CHATPIC_SECRET_SALT must then be given (the services refuse to start
# without it). Bind all interfaces inside the container; publish ports deliberately. The code is
# not pip-installed, so the version for chatpic_build_info is given here.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHATPIC_PROFILE=production \
    CHATPIC_HOST=0.0.0.0 \
    CHATPIC_METRICS_HOST=0.0.0.0 \
    CHATPIC_BUILD_VERSION=${CHATPIC_VERSION}

RUN groupadd --system --gid "${CHATPIC_UID}" chatpic \
    && useradd --system --uid "${CHATPIC_UID}" --gid chatpic --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin chatpic

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Owned by root and read-only for the service user; byte-compiled now because the root
# filesystem may be read-only at run time.
COPY services/ /app/services/
RUN python -m compileall -q /app/services

USER ${CHATPIC_UID}:${CHATPIC_UID}

# Fail the build, not the first scan: every service imports, and the default NSFW model is in
# the image and loads (nothing is downloaded at run time).
RUN python -c "import services.ingest.app, services.links.app, services.review.app, services.rooms.app, services.scanner.worker; from services.scanner.model import NsfwModel, default_card; print('model', NsfwModel(default_card()).version)"

# ingest 8001, links 8002, review 8003, scanner metrics 8004, rooms 8100 (CHATPIC_PORT /
# CHATPIC_METRICS_PORT change them). Each serves /healthz (alive) and /readyz (ready).
EXPOSE 8001 8002 8003 8004 8100

CMD ["python", "-m", "services.ingest"]
