from pathlib import Path

import pytest

from agentmesh.agents.config import WorkerConfig
from agentmesh.scheduler.config import SchedulerConfig


def test_defaults() -> None:
    config = SchedulerConfig.from_env({})
    assert config.listen == "127.0.0.1:50051"
    assert config.metrics_listen == "127.0.0.1:9464"
    assert config.retry.max_attempts == 3


def test_environment_overrides() -> None:
    config = SchedulerConfig.from_env(
        {
            "AGENTMESH_LISTEN": "127.0.0.1:6000",
            "AGENTMESH_HEARTBEAT_INTERVAL": "0.25",
            "AGENTMESH_MAX_STEPS": "9",
            "AGENTMESH_METRICS_LISTEN": "",
            "AGENTMESH_WORKFLOWS_DIR": "/tmp/wf",
            "AGENTMESH_RETRY_MAX_ATTEMPTS": "5",
        }
    )
    assert (config.listen, config.heartbeat_interval, config.max_steps) == (
        "127.0.0.1:6000",
        0.25,
        9,
    )
    assert config.metrics_listen == ""
    assert config.workflows_dir == Path("/tmp/wf")
    assert config.retry.max_attempts == 5
    assert config.liveness_timeout == pytest.approx(0.625)


def test_worker_skills_list() -> None:
    config = WorkerConfig.from_env(
        {"AGENTMESH_SKILLS": "summarize, sentiment", "AGENTMESH_CAPACITY": "2"}
    )
    assert config.skills == ("summarize", "sentiment")
    assert config.capacity == 2


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="AGENTMESH_MAX_STEPS"):
        SchedulerConfig.from_env({"AGENTMESH_MAX_STEPS": "many"})


def test_worker_and_scheduler_stores_have_their_own_variables() -> None:
    env = {"AGENTMESH_STORE": "/tmp/s/scheduler.db", "AGENTMESH_WORKER_STORE": "/tmp/s/w.db"}
    assert SchedulerConfig.from_env(env).store == "/tmp/s/scheduler.db"
    assert WorkerConfig.from_env(env).store == "/tmp/s/w.db"
    assert WorkerConfig.from_env({"AGENTMESH_STORE": "/tmp/s/scheduler.db"}).store == ""
    assert WorkerConfig.from_env({}).store == ""
    # Empty is a value, not an absence: a scheduler told "" keeps requests in memory only.
    assert SchedulerConfig.from_env({"AGENTMESH_STORE": ""}).store == ""
