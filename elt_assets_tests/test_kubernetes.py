"""deploy/kubernetes/values.yaml, checked without a cluster.

The official Dagster chart turns these values into the code server's Deployment, the run
launcher's configuration and the instance's dagster.yaml. No helm binary runs here, so each
`_chart_*` helper below builds what one chart template builds from the same keys (the template is
named in its docstring); whatever Dagster builds at run time is built by Dagster itself: the run
pod comes from dagster-k8s' own job builder, fed from the values. Kubernetes objects are validated
against the Kubernetes API schema (kubernetes-validate, strict), and the commands the pods run are
run here, through the image's entry point as the Dockerfile declares it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster_k8s import DagsterK8sJobConfig, construct_dagster_k8s_job

# Not re-exported by dagster_k8s/__init__.py, but public modules (no underscore): the classes
# K8sRunLauncher itself uses to merge its own settings with a code location's before it calls
# construct_dagster_k8s_job. Using them keeps the precedence between the two Dagster's own.
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig, get_job_name_from_run_id
from kubernetes.utils import parse_quantity

from elt_assets.orchestration.instance import missing_settings
from elt_assets.postgres.embedded import free_port
from elt_assets.settings import SECRET_SETTINGS, Settings

pytestmark = [pytest.mark.pure]

ROOT = Path(__file__).resolve().parent.parent
VALUES_FILE = ROOT / "deploy" / "kubernetes" / "values.yaml"
VALUES: dict[str, Any] = yaml.safe_load(VALUES_FILE.read_text())
# Continuation lines joined, so a multi-line ENV or RUN reads as one instruction.
DOCKERFILE = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
BIN = Path(sys.executable).parent
RELEASE = "dagster"  # the release name of `helm upgrade --install dagster ...` (values.yaml)
NAMESPACE = "elt"
# The Kubernetes API the installed client models (client 36.x is Kubernetes 1.36).
K8S_VERSION = f"1.{kubernetes.__version__.split('.')[0]}.0"
# One run's peak memory, measured for issue #16: a 1M-row, 246 MB CSV file, default ELT_BATCH_ROWS.
MEASURED_PEAK_BYTES = 416 * 1000**2
# What K8sRunLauncher.launch_run passes a run pod: the code server's entry point (`dagster`, its
# default) and `api execute_run`, then the serialized ExecuteRunArgs (a placeholder here).
RUN_COMMAND = ["dagster", "api", "execute_run"]
CODE_SERVER = ["dagster", "code-server", "start"]


# --- the image, as the Dockerfile declares it -----------------------------------------------


def _dockerfile(keyword: str) -> list[str]:
    return [m[1] for m in re.finditer(rf"^{keyword}\s+(.+)$", DOCKERFILE, re.MULTILINE)]


def _entrypoint() -> list[str]:
    return yaml.safe_load(_dockerfile("ENTRYPOINT")[-1])  # a JSON array is YAML


def _image_env() -> dict[str, str]:
    pairs = (item.split("=", 1) for line in _dockerfile("ENV") for item in shlex.split(line))
    return dict(pairs)


def _image_uid() -> int:
    found = re.search(r"useradd [^\n]*--uid (\d+)", DOCKERFILE)
    assert found, "the Dockerfile creates no user with a fixed uid"
    return int(found[1])


# --- what the chart's templates build from the values ---------------------------------------


def _code_location() -> dict[str, Any]:
    (location,) = VALUES["dagster-user-deployments"]["deployments"]
    return location


def _launcher() -> dict[str, Any]:
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    return VALUES["runLauncher"]["config"]["k8sRunLauncher"]


def _chart_fullname() -> str:
    """`dagster.fullname` (_helpers.tpl): the release name when it contains the chart's name."""
    return RELEASE if "dagster" in RELEASE else f"{RELEASE}-dagster"


def _chart_image(image: Mapping[str, Any]) -> str:
    """`dagster.dagsterImage.name` (_helpers.tpl)."""
    return f"{image['repository']}:{image['tag']}"


def _chart_code_server_args(location: Mapping[str, Any]) -> list[str]:
    """The container `args` of deployment-user.yaml for `codeServerArgs`. The template sets no
    `command`, so the image's ENTRYPOINT runs these."""
    port = str(location["port"])
    return [*CODE_SERVER, "-h", "0.0.0.0", "-p", port, *location["codeServerArgs"]]


def _chart_health_check(port: int) -> list[str]:
    """The readiness probe deployment-user.yaml adds when the values give it no `exec`: a command
    run inside the container as is, without the entry point."""
    return ["dagster", "api", "grpc-health-check", "-p", str(port)]


def _includes_config_in_runs(location: Mapping[str, Any]) -> bool:
    """deployment-user.yaml's default for `includeConfigInLaunchedRuns` is on."""
    return bool(location.get("includeConfigInLaunchedRuns", {"enabled": True})["enabled"])


def _chart_location_context(location: Mapping[str, Any]) -> dict[str, Any]:
    """The k8s container context the chart gives the code server
    (`dagsterUserDeployments.k8sContainerContext`, the parts these values use)."""
    context = {
        "image_pull_policy": location["image"]["pullPolicy"],
        "env_secrets": [secret["name"] for secret in location.get("envSecrets", [])],
        "env": location.get("env", []),
        "namespace": NAMESPACE,
    }
    if location.get("resources"):
        context["resources"] = location["resources"]
    return context


def _chart_code_server_deployment() -> dict[str, Any]:
    """The Deployment of deployment-user.yaml (the fields these values set)."""
    location = _code_location()
    image = _chart_image(location["image"])
    probe = {key: value for key, value in location["readinessProbe"].items() if key != "enabled"}
    env = [
        {"name": "DAGSTER_HOME", "value": VALUES["global"]["dagsterHome"]},  # the shared env
        {"name": "DAGSTER_CURRENT_IMAGE", "value": image},
        {"name": "DAGSTER_PG_PASSWORD", "valueFrom": {"secretKeyRef": _chart_pg_secret()}},
        *location.get("env", []),
    ]
    if _includes_config_in_runs(location):
        context = {"k8s": _chart_location_context(location)}
        env.append({"name": "DAGSTER_CONTAINER_CONTEXT", "value": json.dumps(context)})
    container = {
        "name": "dagster-user-deployments",
        "image": image,
        "imagePullPolicy": location["image"]["pullPolicy"],
        "args": _chart_code_server_args(location),
        "env": env,
        "envFrom": [{"secretRef": secret} for secret in location.get("envSecrets", [])],
        "resources": location["resources"],
        "securityContext": location["securityContext"],
        "readinessProbe": {"exec": {"command": _chart_health_check(location["port"])}, **probe},
    }
    labels = {"component": "user-deployments", "deployment": location["name"]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": location["name"], "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": location["podSecurityContext"],
                    "containers": [container],
                },
            },
        },
    }


def _chart_pg_secret() -> dict[str, str]:
    """Where every chart pod reads Dagster's storage password (`dagster.postgresql.secretName`)."""
    return {"name": VALUES["global"]["postgresqlSecretName"], "key": "postgresql-password"}


def _snake(values: Mapping[str, Any]) -> dict[str, Any]:
    """The instance keys configmap-instance.yaml writes: each the snake_case of its value key."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): value for key, value in values.items()}


def _chart_instance() -> dict[str, Any]:
    """The sections of the instance's dagster.yaml that configmap-instance.yaml (with its
    run-coordinator and concurrency helpers) writes from these values; storage and the run
    launcher are the chart's own."""
    daemon = VALUES["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    coordinator: dict[str, Any] = {
        "module": "dagster.core.run_coordinator",
        "class": daemon["runCoordinator"]["type"],
    }
    config = {key: value for key, value in _snake(queued).items() if value not in (None, [])}
    if config:
        coordinator["config"] = config
    sections = {
        "run_coordinator": coordinator,
        "run_monitoring": _snake(daemon["runMonitoring"]),
        "run_retries": _snake(daemon["runRetries"]),
        "python_logs": _snake(VALUES["pythonLogs"]),
        "telemetry": VALUES["telemetry"],
        **VALUES.get("additionalInstanceConfig", {}),
    }
    if VALUES["concurrency"]["enabled"]:
        runs, pools = VALUES["concurrency"]["runs"], VALUES["concurrency"]["pools"]
        sections["concurrency"] = {"runs": _snake(runs), "pools": _snake(pools)}
    return sections


# --- the run pod, as K8sRunLauncher builds it ----------------------------------------------

# runK8sConfig key -> the run launcher's run_k8s_config key (_run-launcher.tpl).
RUN_K8S_KEYS = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}


def _launcher_context() -> K8sContainerContext:
    """The run launcher's share of every run pod, from the config _run-launcher.tpl writes."""
    launcher = _launcher()
    run_k8s = launcher.get("runK8sConfig", {})
    assert set(run_k8s) <= set(RUN_K8S_KEYS), "the chart knows no other runK8sConfig keys"
    return K8sContainerContext(
        image_pull_policy=launcher["imagePullPolicy"],
        service_account_name=_chart_fullname(),  # `dagster.serviceAccountName` when none is named
        env_secrets=[secret["name"] for secret in launcher.get("envSecrets", [])],
        env_vars=launcher.get("envVars", []),
        resources=launcher.get("resources"),
        namespace=NAMESPACE,
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            {RUN_K8S_KEYS[key]: value for key, value in run_k8s.items()}
        ),
    )


def _run_context() -> K8sContainerContext:
    """Launcher settings, then the code location's on top when the chart passes them on."""
    context = _launcher_context()
    location = _code_location()
    if _includes_config_in_runs(location):
        own = K8sContainerContext.create_from_config({"k8s": _chart_location_context(location)})
        context = context.merge(own)
    return context


def _run_job() -> dict[str, Any]:
    """The Job of one run, built by dagster-k8s the way K8sRunLauncher launches it."""
    location = _code_location()
    run_id = str(uuid.uuid4())
    job_name = get_job_name_from_run_id(run_id)
    job_config = DagsterK8sJobConfig(
        # The run image is the one the code server reports (the chart's DAGSTER_CURRENT_IMAGE).
        job_image=_chart_image(location["image"]),
        dagster_home=VALUES["global"]["dagsterHome"],
        instance_config_map=f"{_chart_fullname()}-instance",
        postgres_password_secret=VALUES["global"]["postgresqlSecretName"],
    )
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=[*RUN_COMMAND, json.dumps({"__class__": "ExecuteRunArgs", "run_id": run_id})],
        job_name=job_name,
        pod_name=job_name,
        component="run_worker",
        user_defined_k8s_config=_run_context().run_k8s_config,
        labels={"dagster/run-id": run_id, "dagster/code-location": location["name"]},
        env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": "ingest_orders"}],
    )
    with kubernetes.client.ApiClient() as api:
        return api.sanitize_for_serialization(job)


def _run_container() -> dict[str, Any]:
    return _run_job()["spec"]["template"]["spec"]["containers"][0]


def _plain_env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# --- the objects are valid Kubernetes ------------------------------------------------------


def test_the_run_pod_dagster_k8s_builds_from_the_values_is_valid_kubernetes() -> None:
    job = _run_job()
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    location, launcher = _code_location(), _launcher()
    assert "command" not in container  # the image's ENTRYPOINT wraps the launcher's args
    assert container["args"][: len(RUN_COMMAND)] == RUN_COMMAND
    assert container["image"] == _chart_image(location["image"])
    assert container["imagePullPolicy"] == launcher["imagePullPolicy"]
    # The run resources, not the code server's: these would lose to the code location's own if
    # the chart passed its settings on (includeConfigInLaunchedRuns).
    assert container["resources"] == launcher["runK8sConfig"]["containerConfig"]["resources"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DAGSTER_HOME"]["value"] == VALUES["global"]["dagsterHome"]
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == _chart_pg_secret()
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0  # Dagster retries
    assert pod["securityContext"]["runAsUser"] == _image_uid()


def test_the_run_pod_reserves_the_measured_peak_and_the_code_server_less() -> None:
    resources = _run_container()["resources"]
    request, limit = (parse_quantity(resources[k]["memory"]) for k in ("requests", "limits"))
    assert MEASURED_PEAK_BYTES <= request < limit
    server = _code_location()["resources"]
    assert parse_quantity(server["requests"]["memory"]) < request
    assert parse_quantity(server["limits"]["memory"]) < limit


def test_the_code_server_deployment_is_valid_kubernetes() -> None:
    deployment = _chart_code_server_deployment()
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    # Strict validation does refuse a field Kubernetes does not know.
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == _image_uid()


# --- the values agree with the image, the repository and each other ------------------------


def test_code_server_and_run_pods_get_the_same_settings_and_secret() -> None:
    location, run = _chart_code_server_deployment(), _run_container()
    (server,) = location["spec"]["template"]["spec"]["containers"]
    server_env = {e["name"]: e["value"] for e in _code_location()["env"]}
    assert server_env.items() <= _plain_env(run).items()
    secrets = [source["secretRef"]["name"] for source in server["envFrom"]]
    assert secrets and secrets == [source["secretRef"]["name"] for source in run["envFrom"]]
    settings = Settings.from_env(server_env)  # the platform's own checks of its settings
    assert settings.landing_url is not None and settings.landing_url.startswith("s3://")


def test_values_agree_with_the_image() -> None:
    image = _image_env()
    assert VALUES["global"]["dagsterHome"] == image["DAGSTER_HOME"]
    server_env = {e["name"]: e["value"] for e in _code_location()["env"]}
    assert server_env["ELT_CONTRACTS_DIR"] == image["ELT_CONTRACTS_DIR"]


def test_the_instance_the_chart_writes_has_the_repositorys_settings() -> None:
    shipped = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    rendered = _chart_instance()
    assert set(shipped) - {"storage"} <= set(rendered)  # storage: the chart's postgresql section
    for name, section in rendered.items():
        expected = shipped[name]
        if name == "run_monitoring":  # 0 is what Dagster assumes when the file says nothing
            expected = {"max_resume_run_attempts": 0, **expected}
        assert section == expected, name
    assert missing_settings(rendered) == {}


def test_webserver_and_daemon_run_the_locked_dagster_version() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (dagster,) = (p["version"] for p in lock["package"] if p["name"] == "dagster")
    assert VALUES["dagsterWebserver"]["image"]["tag"] == dagster
    assert VALUES["dagsterDaemon"]["image"]["tag"] == dagster


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_secrets_are_referenced_never_written() -> None:
    documented = set(re.findall(r"--from-literal=([A-Z_]+)=", VALUES_FILE.read_text()))
    assert {name for name in SECRET_SETTINGS if "CELERY" not in name} <= documented
    plain = {e["name"] for e in _code_location()["env"]} | set(_plain_env(_run_container()))
    assert not plain & set(SECRET_SETTINGS)
    assert not [s for s in _strings(VALUES) if re.search(r"://[^/@\s]*:[^/@\s]+@", s)]
    assert VALUES["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in VALUES["postgresql"]
    assert VALUES["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert VALUES["ingress"]["enabled"] is False


# --- the commands the pods run, run here through the image's entry point --------------------


def _local_env(tmp: Path) -> dict[str, str]:
    """A container's environment: the image's settings, then the values'; the bucket, the
    contracts and the state directory replaced by local ones; this venv's commands on PATH."""
    env = {k: v for k, v in _image_env().items() if k.startswith("ELT_")}
    env.update({e["name"]: e["value"] for e in _code_location()["env"]})
    home = tmp / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env.update(
        PATH=f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        HOME=str(tmp),
        DAGSTER_HOME=str(home),
        ELT_LANDING_DIR=str(ROOT / "examples" / "landing"),
        ELT_CONTRACTS_DIR=str(ROOT / "examples" / "contracts"),
        ELT_STATE_DIR=str(tmp / "state"),
    )
    return env


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A command in a container's environment (working directory: its HOME)."""
    return subprocess.run(
        command, check=False, cwd=env["HOME"], env=env, capture_output=True, text=True, timeout=60
    )


def _on_loopback(args: list[str], port: int) -> list[str]:
    """The chart's arguments with this machine's loopback and a free port."""
    local = list(args)
    local[local.index("-h") + 1] = "127.0.0.1"
    local[local.index("-p") + 1] = str(port)
    return local


def _wait_ready(server: subprocess.Popen[bytes], probe: list[str], env: dict[str, str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, "the code server exited"
        if _run(probe, env).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError("the readiness probe never succeeded")


def _group_peak_rss(pgid: int) -> int:
    """Peak resident bytes of every process in a process group, added up (pages they share are
    counted once per process, so this errs high)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
            if int(after_name[2]) != pgid:  # state, ppid, pgrp
                continue
            peak = re.search(r"^VmHWM:\s+(\d+) kB", (stat.parent / "status").read_text(), re.M)
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        total += int(peak[1]) * 1024 if peak else 0
    return total


def _contract_names() -> set[str]:
    folder = ROOT / "examples" / "contracts"
    return {yaml.safe_load(path.read_text())["name"] for path in folder.glob("*.yaml")}


def test_the_code_server_command_of_the_deployment_serves_our_definitions(tmp_path: Path) -> None:
    port = free_port()
    env = _local_env(tmp_path)
    command = [*_entrypoint(), *_on_loopback(_chart_code_server_args(_code_location()), port)]
    log = tmp_path / "code-server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            _wait_ready(server, _chart_health_check(port), env)
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{log.read_text(errors='replace')[-4000:]}") from None
        listed = _run(["dagster", "job", "list", "--grpc-port", str(port)], env)
        assert listed.returncode == 0, listed.stderr[-4000:]
        jobs = set(re.findall(r"^Job: (\S+)$", listed.stdout, re.MULTILINE))
        assert {f"ingest_{name}" for name in _contract_names()} <= jobs
        request = _code_location()["resources"]["requests"]["memory"]
        assert 0 < _group_peak_rss(server.pid) < parse_quantity(request)
    finally:
        # The code server does not stop on SIGTERM in good time; nothing to drain here. The group
        # is gone already when the server failed to start.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def test_the_run_pods_command_exists_behind_the_entry_point(tmp_path: Path) -> None:
    args = _run_container()["args"]
    command = [*_entrypoint(), *args[: len(RUN_COMMAND)], "--help"]
    done = _run(command, _local_env(tmp_path))
    assert done.returncode == 0, done.stderr[-4000:]
    assert "execute_run" in done.stdout
