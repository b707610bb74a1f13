"""deploy/'s Prometheus rules and Grafana dashboard, proven with the real tools.

promtool checks the configuration and the rules and runs the rules' unit
tests; a real Prometheus scrapes a real mesh (a scheduler, two builtin
workers, a flaky `sim` worker and one worker frozen with SIGSTOP) under load,
and every PromQL expression of the dashboard must return data from it.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentmesh.errors import AgentmeshError
from agentmesh.v1 import plan_pb2
from tests.support.mesh import ROOT, Mesh, wait_for

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules" / "agentmesh.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "agentmesh.rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "agentmesh.json"
DOCS = ROOT / "docs" / "observability.md"
TICKETS = sorted((ROOT / "examples" / "tickets").glob("*.json"))

SCHEDULER_JOB = "agentmesh-scheduler"
WORKER_JOB = "agentmesh-worker"
#: Workers that serve /metrics; FLAKY runs the sim backend failing a third of its calls.
WORKERS = ("w1", "w2", "w3")
FLAKY = "w3"
#: What the other workers offer: every builtin skill but detect_language, which only
#: FLAKY offers. A sick worker otherwise gets too little traffic to alert on: the
#: scheduler steers work away from it.
HEALTHY_SKILLS = "extract_entities,sentiment,summarize,classify,draft_reply"
#: A worker without /metrics, frozen with SIGSTOP to be evicted for missed heartbeats.
FROZEN = "w4"

#: Values for Grafana's variables when the dashboard's queries are run directly.
GRAFANA_VARIABLES = {
    "__rate_interval": "30s",
    "__interval": "5s",
    "__range": "1m",
    "workflow": ".*",
    "capability": ".*",
    "worker": ".*",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run `make test`, which installs Debian's prometheus"
    return path


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


# -- what the deploy files contain ------------------------------------------------------


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def substitute_variables(expr: str) -> str:
    """The expression as Grafana would send it, with the test's variable values."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown dashboard variable ${name} in {expr}"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def rule_alert_names() -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\w+)\s*$", RULES.read_text(), flags=re.MULTILINE)


def rule_test_coverage() -> dict[str, set[str]]:
    """For each alert name in the unit tests, which cases it has: "firing", "not firing"."""
    coverage: dict[str, set[str]] = {}
    alert = ""
    for line in RULE_TESTS.read_text().splitlines():
        code = line.split("#", 1)[0].strip()
        if code.startswith("alertname:"):
            alert = code.removeprefix("alertname:").strip()
        elif code.startswith("exp_alerts:") and alert:
            case = "not firing" if code.removeprefix("exp_alerts:").strip() == "[]" else "firing"
            coverage.setdefault(alert, set()).add(case)
    return coverage


# -- the mesh, Prometheus and the load ---------------------------------------------------


class MeshUnderTest:
    """The mesh, and the /metrics port of each worker that serves one."""

    def __init__(self, mesh: Mesh, worker_metrics: dict[str, int]) -> None:
        self.mesh = mesh
        self.worker_metrics = worker_metrics

    def scheduler_metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.mesh.metrics_port}/metrics")

    def worker_metrics_text(self, name: str) -> str:
        return http_get(f"http://127.0.0.1:{self.worker_metrics[name]}/metrics")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshUnderTest]:
    # Offload always: the support workflow's later steps follow the earlier ones to their
    # worker, so that the offload panel has data as well.
    mesh = Mesh(
        tmp_path_factory.mktemp("prometheus-mesh"),
        heartbeat_interval=0.5,
        AGENTMESH_OFFLOAD="always",
    )
    try:
        mesh.start_scheduler()
        for name in WORKERS:
            if name == FLAKY:
                mesh.start_worker(
                    name,
                    backend="sim",
                    metrics=True,
                    AGENTMESH_SIM_LATENCY="0.02",
                    AGENTMESH_SIM_ERROR_RATE="0.3",
                    AGENTMESH_SIM_SEED="7",
                )
            else:
                mesh.start_worker(name, skills=HEALTHY_SKILLS, metrics=True)
        mesh.start_worker(FROZEN, skills=HEALTHY_SKILLS)
        mesh.wait_workers({*WORKERS, FROZEN})
        worker_metrics = {name: mesh.worker_metrics_port(name) for name in WORKERS}
        yield MeshUnderTest(mesh, worker_metrics)
    finally:
        mesh.stop()


class Prometheus:
    """A prometheus process and its HTTP API."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.url = ""
        self.log = log

    def listening(self) -> bool:
        """Whether it listens yet. Started on port 0, it logs the address it got."""
        assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()}"
        found = re.search(r'msg="Listening on" address=(\S+)', self.log.read_text())
        if found:
            self.url = f"http://{found.group(1)}"
        return found is not None

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        body = json.loads(http_get(f"{self.url}/api/v1/{path}{query}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return list(data["result"]) if data["resultType"] in ("vector", "matrix") else [data]

    def ready(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()}"
        try:
            return http_get(f"{self.url}/-/ready").strip() != ""
        except (urllib.error.URLError, ConnectionError):
            return False

    def targets_up(self, expected: int) -> bool:
        active = self.api("targets", state="active")["activeTargets"]
        return len(active) == expected and all(t["health"] == "up" for t in active)

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def render_config(path: Path, mesh: MeshUnderTest) -> None:
    """deploy/'s jobs and rules, scraping the test mesh every second.

    JSON is YAML: Prometheus reads it as it is.
    """
    jobs = re.findall(r"^\s*- job_name:\s*(\S+)", PROMETHEUS_YML.read_text(), re.MULTILINE)
    assert jobs == [SCHEDULER_JOB, WORKER_JOB]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": SCHEDULER_JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{mesh.mesh.metrics_port}"]}],
            },
            {
                "job_name": WORKER_JOB,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"worker": name}}
                    for name, port in mesh.worker_metrics.items()
                ],
            },
        ],
    }
    path.write_text(json.dumps(config, indent=2))


@pytest.fixture(scope="module")
def prometheus(
    mesh: MeshUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    directory = tmp_path_factory.mktemp("prometheus")
    config = directory / "prometheus.yml"
    render_config(config, mesh)
    server = start_prometheus(config, directory)
    try:
        wait_for(lambda: server.targets_up(1 + len(WORKERS)), 30, "every target to be up")
        yield server
    finally:
        server.stop()


def start_prometheus(config: Path, directory: Path) -> Prometheus:
    """A real Prometheus on `config` (checked by promtool first), its data and log in
    `directory`, once it listens and is ready; the caller stops it."""
    checked = promtool("check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    log = directory / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                "--web.listen-address=127.0.0.1:0",
                "--log.level=info",  # for the address it listens on
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    server = Prometheus(process, log)
    try:
        wait_for(server.listening, 30, "prometheus to listen")
        wait_for(server.ready, 30, "prometheus to be ready")
    except BaseException:
        server.stop()
        raise
    return server


#: A summary, then the sentiment of the summary: a chain of two simple steps.
CHAIN = plan_pb2.Plan(
    steps=[
        plan_pb2.PlanStep(
            id="summary",
            capability="summarize",
            inputs={"text": plan_pb2.Binding(refs=["request.text"])},
        ),
        plan_pb2.PlanStep(
            id="tone",
            capability="sentiment",
            inputs={"text": plan_pb2.Binding(refs=["steps.summary.summary"])},
            depends_on=["summary"],
        ),
    ],
    answer={"tone": plan_pb2.Binding(refs=["steps.tone"])},
)


class Load:
    """Threads submitting the example tickets, and a chain on each, until stopped."""

    def __init__(self, mesh: Mesh, threads: int = 3) -> None:
        self.mesh = mesh
        self.succeeded = 0
        self.errors: list[AgentmeshError] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self, offset: int) -> None:
        tickets = [json.loads(t.read_text()) for t in TICKETS]
        i = offset
        while not self._stop.is_set():
            try:
                self.mesh.client.submit("support_ticket", tickets[i % len(tickets)], timeout=30)
                # A chain too: its second step follows the first to its worker (offload).
                self.mesh.client.submit(CHAIN, tickets[i % len(tickets)], timeout=30)
                with self._lock:
                    self.succeeded += 1
            except AgentmeshError as error:
                with self._lock:
                    self.errors.append(error)
            i += 1
            self._stop.wait(0.05)  # pacing: a steady load, not a flood

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def heartbeat_evictions(text: str) -> float:
    match = re.search(
        r'^agentmesh_worker_evictions_total\{reason="heartbeat_timeout"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def traffic(mesh: MeshUnderTest, prometheus: Prometheus) -> Iterator[Load]:
    """Load on the mesh while Prometheus scrapes it; FROZEN is stopped and evicted."""
    load = Load(mesh.mesh)
    load.start()
    try:
        wait_for(lambda: load.succeeded >= 10, 60, "ten requests to succeed under load")
        mesh.mesh.signal(FROZEN, signal.SIGSTOP)
        wait_for(
            lambda: heartbeat_evictions(mesh.scheduler_metrics()) >= 1,
            30,
            f"the scheduler to evict the frozen worker {FROZEN} for missed heartbeats",
        )
        yield load
    finally:
        load.stop()


# -- promtool on the deploy files --------------------------------------------------------


def test_promtool_checks_the_deploy_config_and_rules() -> None:
    config = promtool("check", "config", str(PROMETHEUS_YML))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "WARNING" not in config.stdout + config.stderr, config.stdout + config.stderr
    rules = promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    alerts = rule_alert_names()
    assert len(alerts) >= 8
    coverage = rule_test_coverage()
    missing = {
        alert: sorted({"firing", "not firing"} - coverage.get(alert, set()))
        for alert in alerts
        if coverage.get(alert) != {"firing", "not firing"}
    }
    assert not missing, f"alerts without these unit test cases: {missing}"
    assert set(coverage) <= set(alerts), "unit tests of alerts that do not exist"


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(dashboard_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            # Fixed windows break when the scrape interval changes.
            windows = re.findall(r"\[([^\]]+)\]", target["expr"])
            assert set(windows) <= {"$__rate_interval", "$__range"}, (panel["title"], windows)


# -- a real Prometheus scraping a real mesh ----------------------------------------------


def test_scraped_metrics_pass_promtool_check_metrics(mesh: MeshUnderTest, traffic: Load) -> None:
    texts = {"scheduler": mesh.scheduler_metrics()}
    texts.update({name: mesh.worker_metrics_text(name) for name in WORKERS})
    assert "agentmesh_subtask_attempt_duration_seconds_bucket" in texts["scheduler"]
    assert "agentmesh_worker_subtask_duration_seconds_bucket" in texts[FLAKY]
    for name, text in texts.items():
        result = promtool("check", "metrics", stdin=text)
        problems = (result.stdout + result.stderr).strip()
        assert result.returncode == 0 and not problems, f"{name}: {problems}"


def test_rules_load_and_evaluate_without_errors(prometheus: Prometheus, traffic: Load) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(r["health"] != "unknown" for r in rules) else None

    rules = wait_for(evaluated, 30, "every rule to be evaluated")
    assert isinstance(rules, list)
    groups = {g["name"] for g in prometheus.api("rules")["groups"]}
    assert groups == {"agentmesh-scheduler", "agentmesh-worker"}
    broken = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not broken
    alerts = [r for r in rules if r["type"] == "alerting"]
    assert sorted(r["name"] for r in alerts) == sorted(rule_alert_names())
    for rule in alerts:
        assert rule["labels"].get("severity") in ("warning", "critical"), rule["name"]
        assert rule["annotations"].get("summary"), rule["name"]
        assert rule["annotations"].get("description"), rule["name"]


def test_rules_use_only_metrics_the_mesh_exports(prometheus: Prometheus, traffic: Load) -> None:
    # Metric names, not the recorded `level:name:operation` names built on them.
    used = set(re.findall(r"(?<![:\w])agentmesh_\w+(?![:\w])", RULES.read_text()))
    assert len(used) >= 8, used

    def missing() -> set[str]:
        return used - set(prometheus.api("label/__name__/values"))

    # The eviction counter appears at the first eviction: give Prometheus a scrape or two.
    deadline = time.monotonic() + 30
    while missing() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not missing(), f"rules use metrics nothing exports: {sorted(missing())}"


def test_every_dashboard_query_returns_data(prometheus: Prometheus, traffic: Load) -> None:
    queries = [(title, substitute_variables(expr)) for title, expr in dashboard_queries()]
    assert len(queries) >= 20
    # Rates need a few scrapes of the load: poll until every query has data, within a bound.
    deadline = time.monotonic() + 60
    while True:
        empty = [f"{title}: {expr}" for title, expr in queries if not prometheus.query(expr)]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    assert traffic.succeeded >= 10


def test_dashboard_variables_have_values(prometheus: Prometheus, traffic: Load) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
        assert match, variable["definition"]
        metric, label = match.groups()
        values = prometheus.api(f"label/{label}/values", **{"match[]": metric})
        assert values, f"variable {variable['name']}: no values of {label} on {metric}"
    workers = prometheus.api("label/worker/values", **{"match[]": "agentmesh_mesh_worker_capacity"})
    assert set(WORKERS) <= set(workers)


def test_alerts_follow_the_mesh(mesh: MeshUnderTest, prometheus: Prometheus, traffic: Load) -> None:
    flaky = f"127.0.0.1:{mesh.worker_metrics[FLAKY]}"

    def active(name: str) -> list[dict[str, Any]]:
        return [a for a in prometheus.alerts() if a["labels"]["alertname"] == name]

    # The frozen worker was evicted for missed heartbeats: the alert fires at once
    # (it is the first eviction of this scheduler, which increase() alone misses).
    missed = wait_for(
        lambda: [a for a in active("AgentmeshWorkerHeartbeatsMissed") if a["state"] == "firing"],
        30,
        "AgentmeshWorkerHeartbeatsMissed to fire",
    )
    assert isinstance(missed, list)
    assert missed[0]["labels"]["reason"] == "heartbeat_timeout"
    assert missed[0]["labels"]["severity"] == "warning"
    # The worker failing a third of its calls is pending (its `for:` is ten minutes);
    # the others are not.
    wait_for(
        lambda: [
            a for a in active("AgentmeshWorkerErrorRatioHigh") if a["labels"]["instance"] == flaky
        ],
        30,
        f"AgentmeshWorkerErrorRatioHigh to be pending for {FLAKY}",
    )
    erroring = {a["labels"]["instance"] for a in active("AgentmeshWorkerErrorRatioHigh")}
    assert erroring == {flaky}
    for name in ("AgentmeshSchedulerDown", "AgentmeshNoActiveWorkers"):
        assert not active(name), name


def test_docs_describe_every_exported_metric(mesh: MeshUnderTest, traffic: Load) -> None:
    texts = [mesh.scheduler_metrics(), mesh.worker_metrics_text(WORKERS[0])]
    families = {
        name
        for text in texts
        for name in re.findall(r"^# TYPE (agentmesh_\w+) ", text, re.MULTILINE)
        if not name.endswith("_created")
    }
    assert len(families) >= 20
    docs = DOCS.read_text()
    undocumented = sorted(f for f in families if f"`{f}`" not in docs)
    assert not undocumented, f"docs/observability.md does not describe {undocumented}"
