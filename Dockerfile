# syntax=docker/dockerfile:1
# Multi-stage build. The builder has the training extras (torch CPU, xgboost,
# sentence-transformers) and builds the demo models; the runtime image has only
# the serving dependencies, no torch, and runs as a non-root user.

FROM python:3.11-slim AS builder
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
# CPU-only torch first, so nothing pulls the CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY vectoros ./vectoros
COPY server ./server
COPY training ./training
COPY clients ./clients
COPY scripts ./scripts
RUN pip install ".[train]"
# Demo models (synthetic scorer, exported embedder) into /models.
RUN python scripts/build_demo.py --models /models --data-dir /data
# A wheel of the serving package for the runtime stage.
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    VECTOROS_HOST=0.0.0.0 VECTOROS_PORT=50051 \
    VECTOROS_MODELS=/models VECTOROS_DATA_DIR=/data
COPY --from=builder /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /data vectoros \
    && mkdir -p /models /data && chown vectoros /models /data
COPY --from=builder --chown=vectoros /models /models
COPY --from=builder --chown=vectoros /data /data
USER vectoros
EXPOSE 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "server.healthcheck", "127.0.0.1:50051"]
ENTRYPOINT ["vectoros"]
CMD ["serve"]
