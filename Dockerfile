# syntax=docker/dockerfile:1
# The agentmesh image: the scheduler and the workers, one image, the command chooses
# (`agentmesh scheduler`, `agentmesh worker`; deploy/kubernetes runs both from it).
#
#   docker build -t registry.example.com/agentmesh:0.1.0 .
#
# Two stages: the first installs agentmesh's four parts from this repository into a
# virtual environment, as `make install` does (the same parts and extras, not editable:
# an image has no source tree to edit, and without the development tools); the second
# is a slim Python with that environment alone, no compiler nor pip cache, running as an
# unprivileged user (uid 10001, which deploy/kubernetes's securityContext names).
# tests/deploy/test_image.py checks this file offline: no container engine runs there.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/agentmesh
WORKDIR /src
# Only the four parts: the contracts, the client (and agentmesh.server), the scheduler
# (with psycopg, for AGENTMESH_STORE=postgresql://...)
# and the agents (.dockerignore keeps the rest of the repository out of the context).
COPY protos/ protos/
COPY clients/python/ clients/python/
COPY scheduler/ scheduler/
COPY agents/ agents/
RUN /opt/agentmesh/bin/python -m pip install --upgrade 'pip>=25.1' \
 && /opt/agentmesh/bin/python -m pip install ./protos './clients/python[server]' './scheduler[postgresql]' './agents[all]'

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 agentmesh \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin agentmesh \
 && mkdir -p /var/lib/agentmesh \
 && chown 10001:10001 /var/lib/agentmesh
COPY --from=build /opt/agentmesh /opt/agentmesh
ENV PATH=/opt/agentmesh/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The scheduler's store and a worker's store of results go here (a volume in Kubernetes).
WORKDIR /var/lib/agentmesh
USER 10001:10001
# Scheduler gRPC and /metrics; worker gRPC and /metrics (deploy/kubernetes).
EXPOSE 50051 9464 50052 9465
ENTRYPOINT ["agentmesh"]
CMD ["scheduler"]
