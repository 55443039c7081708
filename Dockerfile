# syntax=docker/dockerfile:1
# Multi-stage build. The builder has the training extras (torch CPU, xgboost,
# sentence-transformers) and builds the demo models; the runtime image has only
# the serving dependencies, no torch, and runs as a non-root user.

FROM python:3.11-slim AS builder
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
# Exactly the locked packages (hash-checked); the lock pins torch's CPU build
# (2.13.0+cpu), which PyTorch's CPU index serves, so nothing pulls CUDA.
COPY requirements ./requirements
RUN pip install --require-hashes --no-deps --extra-index-url https://download.pytorch.org/whl/cpu \
        -r requirements/dev.lock
COPY pyproject.toml README.md ./
COPY vectoros ./vectoros
COPY server ./server
COPY training ./training
COPY scripts ./scripts
RUN pip install --no-deps --no-build-isolation .
# Demo models (synthetic scorer, exported embedder) into /models.
RUN python scripts/build_demo.py --models /models --data-dir /data
# A wheel of the serving package for the runtime stage.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    VECTOROS_HOST=0.0.0.0 VECTOROS_PORT=50051 \
    VECTOROS_MODELS=/models VECTOROS_DATA_DIR=/data \
    VECTOROS_TOKENS_FILE=/secrets/tokens.json
# The server listens on 0.0.0.0, so it refuses to start without a tokens file:
# mount one (a Secret) at /secrets/tokens.json, made with `vectoros tokens create`.
COPY --from=builder /wheels /wheels
COPY requirements/serve.lock /wheels/serve.lock
RUN pip install --require-hashes --no-deps -r /wheels/serve.lock \
    && pip install --no-deps /wheels/*.whl && rm -rf /wheels \
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
