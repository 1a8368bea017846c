# threadlog with its dependencies installed at build time.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY events events
COPY projections projections
COPY handlers handlers
COPY scheduler scheduler
COPY threadlog threadlog
COPY bench bench
RUN pip install --no-cache-dir .
ENV LITELLM_LOCAL_MODEL_COST_MAP=True
CMD ["threadlog", "serve"]
