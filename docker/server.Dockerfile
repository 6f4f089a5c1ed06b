# The modelhost server image, for running several servers on one shared state
# (docker/compose.yaml). Build from the repository root:
#   docker build -f docker/server.Dockerfile -t modelhost/server .
# Models run as processes inside the container (the process backend).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/modelhost
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[onnx,postgres,redis]"

EXPOSE 8080
ENTRYPOINT ["python", "-m", "modelhost"]
CMD ["server", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/data"]
