# Custom Beam SDK container for Dataflow and Flink workers: the official Beam Python 3.11 SDK
# image of the same Beam version this package pins, with medvision-pipeline installed.
# The base image's ENTRYPOINT (/opt/apache/beam/boot, the SDK worker launcher) is kept.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/medvision-pipeline:0.3.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/medvision-pipeline:0.3.0
#   medvision-pipeline build ... --runner DataflowRunner \
#     --sdk_container_image REGION-docker.pkg.dev/PROJECT/REPO/medvision-pipeline:0.3.0 --sdk_location container
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

# No transparent huge pages for numpy's large arrays (see pipeline/__init__.py): the worker imports numpy
# before any of this package's code runs.
ENV NUMPY_MADVISE_HUGEPAGE=0

WORKDIR /opt/medvision-pipeline
COPY setup.py README.md ./
COPY pipeline/ pipeline/
COPY transforms/ transforms/
COPY schemas/ schemas/
COPY consumers/ consumers/
RUN pip install --no-cache-dir ".[gcp,aws]" && pip check
