"""What every agentmesh server shares: the scheduler and the agents build on it, never on
each other (the `server` extra of the `agentmesh` distribution).

The skill contract and its schemas (`skills`), usage and load estimators, settings from
the environment, an injectable clock, gRPC handler plumbing (error mapping, health,
reflection), structured logs, Prometheus metrics and OpenTelemetry tracing.
"""
