# The longpoll server in a container: docker build -t longpoll . && docker run -p 8101:8101 longpoll
# docs/deployment.md explains it; tests/test_deployment.py checks it.
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN python -m venv /opt/longpoll \
    && /opt/longpoll/bin/pip install --no-cache-dir --disable-pip-version-check '.[redis]'

FROM python:3.12-slim-bookworm
COPY --from=build /opt/longpoll /opt/longpoll
# A user of its own, never root; /data is where --persist may write.
RUN useradd --system --user-group --uid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin longpoll \
    && mkdir /data \
    && chown longpoll:longpoll /data
USER 10001:10001
ENV PATH=/opt/longpoll/bin:$PATH \
    PYTHONUNBUFFERED=1
WORKDIR /data
EXPOSE 8101
# Unhealthy when /healthz does not answer 200 (with the operations token, if one is set).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; t = os.environ.get('LONGPOLL_OPERATIONS_TOKEN'); u.urlopen(u.Request('http://127.0.0.1:8101/healthz', headers={'Authorization': 'Bearer ' + t} if t else {}), timeout=4)"]
# SIGTERM (docker stop): waiting subscribers are answered, then the server exits
# within --grace (5 s), before docker's 10 s are up.
ENTRYPOINT ["longpoll"]
CMD ["serve", "--host", "0.0.0.0"]
