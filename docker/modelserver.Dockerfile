# The model server image, run the way SageMaker runs inference images:
#   docker run -v /path/to/model:/opt/ml/model -p 8080:8080 modelhost/sklearn serve
#
# One Dockerfile, three images; FRAMEWORK picks the built-in handlers:
#   docker build -f docker/modelserver.Dockerfile --build-arg FRAMEWORK=sklearn -t modelhost/sklearn .
#   docker build -f docker/modelserver.Dockerfile --build-arg FRAMEWORK=onnx    -t modelhost/onnx .
#   docker build -f docker/modelserver.Dockerfile --build-arg FRAMEWORK=python  -t modelhost/python .
# Build from the repository root (the context must hold pyproject.toml and src/).
FROM python:3.11-slim

ARG FRAMEWORK=python

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/modelhost
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[onnx]"

# The SageMaker container contract. The launcher sets the vCPU share (OMP_NUM_THREADS and
# friends) and may override any of these with `docker run -e`.
ENV SM_MODEL_DIR=/opt/ml/model \
    SAGEMAKER_BIND_TO_PORT=8080 \
    MODELHOST_BIND_HOST=0.0.0.0 \
    MODELHOST_FRAMEWORK=${FRAMEWORK}

WORKDIR /opt/ml/model
EXPOSE 8080

# `serve` is what SageMaker passes as the container's argument; the server accepts it.
ENTRYPOINT ["python", "-m", "modelhost.modelserver"]
CMD ["serve"]
