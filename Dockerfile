# syntax=docker/dockerfile:1
# The Headwater image: the operator (`headwater operator`, the default), the lineage API and CLI, and the
# runner of sql steps (`headwater step sql`).
#
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t ghcr.io/headwater-dev/headwater:0.1.0 .
#
# The builder installs the dependencies from the hashed lock requirements/runtime.txt (pip --require-hashes:
# a file whose hash is not in the lock is refused), then builds the package itself with the hashed build
# tools of requirements/build.txt and no dependencies, into a virtual environment; the final stage copies
# only that environment onto the same slim Python base, so it carries no compiler, no pip cache and no
# source tree.
#
# The web UI is built before, outside the image (bash hack/build-ui.sh, which hack/setup.sh runs): its bundle
# lands in operator/headwater/lineage/ui_static/ and is copied with the package.  The image builds no
# JavaScript, so it needs no Node.js base image: the same Dockerfile builds with Docker and, without any
# registry, with buildah on a local Debian base (hack/images.sh).  A build without the UI stops here.
#
# The base image is named by tag: no digest is recorded here yet. Pin it for reproducible builds with
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/headwater
WORKDIR /src
COPY requirements/runtime.txt requirements/build.txt requirements/
RUN /opt/headwater/bin/pip install --no-cache-dir --require-hashes -r requirements/build.txt -r requirements/runtime.txt
COPY pyproject.toml README.md* ./
COPY operator/ operator/
RUN test -f operator/headwater/lineage/ui_static/index.html -a -f operator/headwater/lineage/ui_static/app.js \
 || { echo "the web UI is not built: run 'bash hack/build-ui.sh' before building the image" >&2; exit 1; }
RUN /opt/headwater/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
 && /opt/headwater/bin/pip check \
 && /opt/headwater/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/headwater/bin/headwater --help >/dev/null \
 && /opt/headwater/bin/python -c "from headwater.lineage.ui import WebUi; assert 'app.js' in WebUi.packaged().files"

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="headwater" \
      org.opencontainers.image.description="A Kubernetes operator that runs data pipelines as dependency-ordered Jobs and records their lineage." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# A named user, so that libpq (which asks for the local user name when a connection string names none) works.
RUN groupadd --system --gid 65532 headwater \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin headwater
COPY --from=builder /opt/headwater /opt/headwater
ENV PATH=/opt/headwater/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["headwater"]
CMD ["operator"]
