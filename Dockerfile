# The all-in-one server: the API, the ClearML web app at /, the console and the embedded database,
# with every byte of state under /data. The same image runs as N API replicas on MongoDB
# (APISERVER__database__uri, APISERVER__files__backend=gridfs); see docs/deployment.md.
#
# Build it with scripts/build-image.sh, which builds the project's wheel and its dependencies' wheels
# on the host into the build context's wheels/ folder: the image installs only from there, so the
# build needs no package index (and gets exactly the wheels the host resolved).
ARG BASE=python:3.11-slim
FROM ${BASE}

# A bare Debian base (no Python) gets Debian's python3; python:3.11-slim already has one.
RUN if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then \
      apt-get update && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv && \
      rm -rf /var/lib/apt/lists/*; \
    fi

COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/apiserver && \
    /opt/apiserver/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels --disable-pip-version-check \
      apiserver && \
    rm -rf /tmp/wheels && \
    useradd --system --uid 10001 --user-group --home-dir /data --no-create-home apiserver && \
    mkdir -p /data && chown apiserver:apiserver /data && chmod 0700 /data

ENV PATH=/opt/apiserver/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    APISERVER__apiserver__listen__host=0.0.0.0 \
    APISERVER__apiserver__listen__port=8008 \
    APISERVER__database__embedded__data_dir=/data

USER apiserver
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8008
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('APISERVER__apiserver__listen__port', '8008'), timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["apiserver"]
