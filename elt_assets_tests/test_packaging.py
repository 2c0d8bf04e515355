"""The Dockerfile, compose file, dagster.yaml and README promise things; check them for real."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import dagster as dg
import pytest
import yaml

from elt_assets.settings import SETTINGS
from elt_assets_tests.conftest import Warehouse

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
CONSOLE_SCRIPTS = {e.name for e in entry_points(group="console_scripts")}


def _instructions(keyword: str) -> list[str]:
    return [m[1] for m in re.finditer(rf"^{keyword}\s+(.+)$", DOCKERFILE, re.MULTILINE)]


@pytest.mark.pure
def test_every_path_the_dockerfile_copies_exists() -> None:
    sources = []
    for line in _instructions("COPY"):
        parts = [p for p in shlex.split(line) if not p.startswith("--")]
        if "--from=" in line:
            continue
        sources.extend(parts[:-1])
    assert sources, "the Dockerfile copies nothing?"
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert missing == []


def _json_command(line: str) -> list[str]:
    return yaml.safe_load(line)  # JSON arrays are YAML


@pytest.mark.pure
def test_dockerfile_commands_are_real_entry_points() -> None:
    entrypoint = _json_command(_instructions("ENTRYPOINT")[0])
    command = _json_command(_instructions("CMD")[0])
    assert entrypoint == ["elt", "exec", "--"]
    for executable in (entrypoint[0], command[0]):
        assert executable in CONSOLE_SCRIPTS, f"{executable} is not an installed command"
    # The commands documented in the Dockerfile's comments must exist too.
    for documented in re.findall(r"docker run IMAGE (\S+)", DOCKERFILE):
        assert documented in CONSOLE_SCRIPTS, documented
    assert "/app/workspace.yaml" in command
    assert "USER elt" in DOCKERFILE and "uv sync --locked" in DOCKERFILE


@pytest.mark.pure
@pytest.mark.parametrize(
    "compose_file", ["docker-compose.yaml", "deploy/celery/docker-compose.yaml"]
)
def test_compose_services_run_real_commands_and_mount_existing_paths(compose_file: str) -> None:
    path = ROOT / compose_file
    compose = yaml.safe_load(path.read_text())
    ours = [name for name, service in compose["services"].items() if "build" in service]
    assert ours, "no service runs the image"
    for name in ours:
        service = compose["services"][name]
        command = service.get("command")
        if command:
            assert command[0] in CONSOLE_SCRIPTS, f"service {name} runs {command[0]}"
        assert (path.parent / service["build"] / "Dockerfile").exists()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith(("./", "../")):
                assert (path.parent / host).exists(), f"service {name} mounts missing {host}"
    # Every secret file the compose file mounts is one deploy/make-secrets.sh writes.
    written = (ROOT / "deploy" / "make-secrets.sh").read_text()
    for name, secret in compose.get("secrets", {}).items():
        file_name = Path(secret["file"]).name
        assert re.search(rf"(>|cp \S+) {re.escape(file_name)}$", written, re.MULTILINE), name


@pytest.mark.pure
@pytest.mark.parametrize(
    "compose_file", ["docker-compose.yaml", "deploy/celery/docker-compose.yaml"]
)
def test_compose_stacks_publish_only_on_loopback_and_the_ui_only_behind_its_password(
    compose_file: str,
) -> None:
    """Dagster's UI has no login: a stack publishes nothing beyond loopback, and the UI only
    through the proxy that asks for the password (deploy/ui-proxy/nginx.conf)."""
    path = ROOT / compose_file
    services = yaml.safe_load(path.read_text())["services"]
    published = {
        name: port for name, service in services.items() for port in service.get("ports", [])
    }
    assert all(port.startswith("127.0.0.1:") for port in published.values()), published
    assert "ports" not in services["webserver"]
    proxy = services["ui"]
    assert proxy["ports"] == ["127.0.0.1:3000:8080"]
    assert proxy["secrets"] == ["ui_htpasswd"]
    (mount,) = proxy["volumes"]
    conf_file, target, _ = mount.split(":")
    assert target == "/etc/nginx/conf.d/default.conf"
    conf = (path.parent / conf_file).read_text()
    directives = [line.split("#")[0].strip() for line in conf.splitlines()]
    assert "listen 8080;" in directives
    assert "proxy_pass http://webserver:3000;" in directives
    assert 'auth_basic "elt-assets";' in directives
    assert "auth_basic_user_file /run/secrets/ui_htpasswd;" in directives
    # one location, so no path of the UI is left without the password
    assert sum(line.startswith("location ") for line in directives) == 1


@pytest.mark.pure
def test_make_secrets_writes_readable_secrets_in_a_private_directory_and_the_ui_password(
    tmp_path: Path,
) -> None:
    """Compose mounts secret files as they are on the host and the containers read them as
    their own users: every file is readable, the directory its owner's alone; the UI's
    htpasswd holds a SHA-512 crypt hash of the password the user is given, never the password."""
    deploy = tmp_path / "deploy"
    (deploy / "secrets").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "make-secrets.sh", deploy)
    result = subprocess.run(
        ["sh", str(deploy / "make-secrets.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    secrets = deploy / "secrets"
    assert secrets.stat().st_mode & 0o777 == 0o700
    for compose_file in ("docker-compose.yaml", "deploy/celery/docker-compose.yaml"):
        for secret in yaml.safe_load((ROOT / compose_file).read_text())["secrets"].values():
            written = secrets / Path(secret["file"]).name
            assert written.stat().st_mode & 0o444 == 0o444, written  # readable in a container
    password = (secrets / "ui_password").read_text().strip()
    assert (secrets / "ui_password").stat().st_mode & 0o077 == 0  # the user's copy: private
    user, hashed = (secrets / "ui_htpasswd").read_text().strip().split(":", 1)
    assert user == "elt" and hashed.startswith("$6$") and password not in hashed
    salt = hashed.split("$")[2]
    again = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    )
    assert again.stdout.strip() == hashed  # the hash is of that password


@pytest.mark.pure
def test_workspace_module_builds_the_sample_datasets_with_sensors_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]["module_name"]
    assert module == "elt_assets.definitions"
    monkeypatch.setenv("ELT_CONTRACTS_DIR", str(ROOT / "examples" / "contracts"))
    monkeypatch.setenv("ELT_LANDING_DIR", str(ROOT / "examples" / "landing"))
    from elt_assets.definitions import defs

    loaded = defs()
    keys = {key.to_user_string() for key in loaded.resolve_asset_graph().get_all_asset_keys()}
    for dataset, target in (("orders", "sales/orders"), ("customers", "crm/customers")):
        assert {f"raw/{dataset}_files", f"staged/{dataset}_staging", target} <= keys
    assert "web/events" in keys
    sensors = {s.name: s for s in loaded.sensors or []}
    for name in ("orders_files", "customers_files", "events_files"):
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING


@pytest.mark.pure
def test_readme_configuration_table_lists_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(ELT_[A-Z_]+)` \| ([^|]+) \|", readme, re.MULTILINE))
    assert set(rows) == set(SETTINGS)
    for name, (default, _) in SETTINGS.items():
        assert rows[name].strip().strip("`") == default, name


@pytest.mark.pure
def test_readme_quick_start_and_ci_run_the_same_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make dev" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == "make test"


@pytest.mark.db
def test_dagster_yaml_loads_as_an_instance_on_postgres(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped dagster.yaml is valid and its storage really works on PostgreSQL."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("ELT_DAGSTER_DATABASE_URL", warehouse.owner_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.run_coordinator is not None
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        assert instance.run_retries_enabled
        assert not instance.telemetry_enabled
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 2
        assert instance.get_runs() == []


@pytest.mark.pure
def test_the_celery_deployments_instance_is_the_platforms_with_a_celery_launcher() -> None:
    """deploy/celery/dagster.yaml differs from dagster.yaml only in the run launcher and the
    compute logs, and its launcher's Celery settings are the ones `elt worker` uses."""
    from elt_assets.cli.worker import CELERY_CONFIG

    platform = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    celery = yaml.safe_load((ROOT / "deploy" / "celery" / "dagster.yaml").read_text())
    launcher, logs = celery.pop("run_launcher"), celery.pop("compute_logs")
    assert celery == platform
    assert launcher["class"] == "CeleryRunLauncher"
    assert launcher["config"]["config_source"] == CELERY_CONFIG
    assert logs["class"] == "NoOpComputeLogManager"


class Theirs(dg.ConfigurableResource):
    """A resource of the user's own project."""

    name: str = "theirs"


@pytest.mark.pure
def test_a_projects_own_warehouse_and_landing_resources_do_not_collide(tmp_path: Path) -> None:
    """Our resource keys are prefixed (elt_*): a Dagster project with resources named
    `warehouse` and `landing` merges with our definitions."""
    from elt_assets.contracts.loader import load_contracts
    from elt_assets.definitions import build_definitions
    from elt_assets.settings import Settings

    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "items.yaml").write_text(
        "name: items\nsource: {glob: 'items/*.csv'}\n"
        "target: {schema: shop, table: items, primary_key: [id]}\n"
        "columns: [{name: id, type: bigint}]\n"
    )
    settings = Settings.from_env({"ELT_LANDING_DIR": str(tmp_path), "ELT_STATE_DIR": str(tmp_path)})
    ours = build_definitions(load_contracts(contracts), settings)

    @dg.asset
    def their_report(warehouse: Theirs, landing: Theirs) -> None:
        """A user's own asset on their own resources."""

    theirs = dg.Definitions(
        assets=[their_report], resources={"warehouse": Theirs(), "landing": Theirs()}
    )
    merged = dg.Definitions.merge(ours, theirs)
    merged.get_repository_def()  # resolves every resource of every asset, sensor and job
    assert {"warehouse", "landing", "elt_warehouse", "elt_landing"} <= set(merged.resources or {})
