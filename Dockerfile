# hedgewatch: the daemon (`hedgewatch run`, default) and the notifier (`hedgewatch notify`) in one image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY service ./service
COPY connectors ./connectors
COPY rules ./rules
RUN pip install . \
 && rm -rf /src \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/hedgewatch --create-home hedgewatch

# Listeners bind to loopback by default; inside a container loopback is unreachable from the published
# port and from Prometheus, so the image binds every interface. Publish the port on 127.0.0.1 of the host
# (as docker-compose.yml does) unless it must be reachable from elsewhere.
ENV HEDGEWATCH__HTTP__HOST=0.0.0.0 \
    HEDGEWATCH__REDIS__OUTBOX_DIR=/var/lib/hedgewatch/outbox

USER hedgewatch
WORKDIR /var/lib/hedgewatch
VOLUME ["/var/lib/hedgewatch"]
EXPOSE 9108

HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["hedgewatch"]
CMD ["run"]
