# The model server image, run the way SageMaker runs inference images:
#   docker run -v /path/to/model:/opt/ml/model -p 8080:8080 modelhost/sklearn serve
#
# Built by `modelhost images build [--framework sklearn|onnx|python|all]`, with no registry
# access: it makes the base (Debian bookworm + python3, by mmdebstrap) and a build context
# holding this file and the wheels, fetched on the host for the base's interpreter:
#   wheelhouse/deps/  every pinned dependency's wheel, pip's own, requirements.txt
#   wheelhouse/app/   modelhost's wheel
# Nothing is downloaded during the build. By hand, from such a context:
#   podman build -f modelserver.Dockerfile --build-arg FRAMEWORK=sklearn -t modelhost/sklearn .
# One Dockerfile, three images; FRAMEWORK picks the built-in handlers. They share every
# layer but the last ones, so building all three costs one dependency install.
ARG BASE=modelhost/base:bookworm-2

FROM ${BASE} AS deps
COPY wheelhouse/deps/ /wheels/
# Debian's python3 is externally managed: the server gets a virtual environment of its own
# (without ensurepip, which bookworm's python3 lacks; pip runs from its wheel).
RUN python3 -m venv --without-pip /opt/modelhost \
    && set -- /wheels/pip-*.whl \
    && /opt/modelhost/bin/python "$1/pip" install --quiet --no-index --find-links /wheels \
        --disable-pip-version-check --requirement /wheels/requirements.txt

FROM ${BASE}
COPY --from=deps /opt/modelhost /opt/modelhost
COPY wheelhouse/app/ /tmp/app/
RUN /opt/modelhost/bin/python -m pip install --quiet --no-index --no-deps \
        --disable-pip-version-check /tmp/app/*.whl \
    && rm -rf /tmp/app

ARG FRAMEWORK=python
# A RUN that uses the argument: buildah (podman) keys its layer cache on the ENV line as
# written, so without it every framework's image would be the first one built.
RUN echo "${FRAMEWORK}" > /opt/modelhost/framework
# The SageMaker container contract. The launcher sets the vCPU share (OMP_NUM_THREADS and
# friends) and may override any of these with `docker run -e`.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SM_MODEL_DIR=/opt/ml/model \
    SAGEMAKER_BIND_TO_PORT=8080 \
    MODELHOST_BIND_HOST=0.0.0.0 \
    MODELHOST_FRAMEWORK=${FRAMEWORK}

WORKDIR /opt/ml/model
EXPOSE 8080
# Its server can wait as a spare container, imports done, for a serverless cold start's
# model (see modelhost.instances.spares); other images start the usual way.
LABEL modelhost.spares="1"

# `serve` is what SageMaker passes as the container's argument; the server accepts it.
ENTRYPOINT ["/opt/modelhost/bin/python", "-m", "modelhost.modelserver"]
CMD ["serve"]
