# One image for every Ceper Supply service; docker-compose.yml picks the service by its command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The wildcard lets the build go on without a README (it only feeds the package description).
COPY pyproject.toml README.md* ./
COPY ceper ceper
COPY shared shared
COPY services services
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ceper \
    && mkdir -p /var/lib/ceper \
    && chown ceper:ceper /var/lib/ceper

# Import from the source tree, so `ceper` and uvicorn load the same files, migrations included.
ENV PYTHONPATH=/app \
    CEPER_ENV=production \
    CEPER_VAR_DIR=/var/lib/ceper
USER ceper
EXPOSE 8000 8001 8002 8003 8004
CMD ["ceper", "--help"]
