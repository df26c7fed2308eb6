# digest in a container: the daemon (schedules + web server) as a non-root user.
#   docker build -t digest .
#   docker run -d --name digest -p 8000:8000 \
#     -v digest-store:/data/store -v digest-public:/data/public -v digest-maildir:/data/maildir \
#     -v "$PWD/inbox:/data/inbox" -e DIGEST_SECRET=... digest
# See docs/OPERATIONS.md ("Docker").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DIGEST_LOG_LEVEL=INFO
WORKDIR /app
COPY pyproject.toml README.md ./
COPY digest ./digest
COPY templates ./templates
COPY seeds ./seeds
RUN pip install --no-cache-dir . \
 && useradd --system --create-home --home-dir /data --uid 10001 digest \
 && mkdir -p /data/store /data/public /data/maildir /data/inbox \
 && chown -R digest:digest /data

USER digest
WORKDIR /data
# `digest init` writes /data/config.toml (inbox, store); listen on all interfaces inside the
# container: the one `host` line of the [web] table (the sed range ends at the next table, so
# [smtp] host keeps its value). Mount your own config.toml over /data/config.toml to replace it.
RUN digest init \
 && sed -i '/^\[web\]$/,/^\[/ s/^host = "127.0.0.1"$/host = "0.0.0.0"/' config.toml

VOLUME ["/data/store", "/data/public", "/data/maildir", "/data/inbox"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
CMD ["digest", "--config", "/data/config.toml", "run"]
