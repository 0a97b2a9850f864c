"""docker-compose.yaml, Dockerfile and .dockerignore: the local stack is wired to what exists here.

No Docker engine is needed. The compose file is read with PyYAML (merge keys resolved) and its
``${VAR:-default}`` substitutions are resolved with an empty environment, i.e. with the file's own
defaults. Then every piece the stack relies on is checked against the code it will run: the
``lucca-sandbox`` console script and its flags, the Airflow CLI subcommands, the connections (parsed
by Airflow and turned into a client configuration by the hook), the settings the example DAGs read,
the tenants (the Variable ``lucca_tenants``, one sandbox service per account, the Redis of the
shared request budgets), the bucket, the pool, the login, the health checks and the start-up order.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DAGS = ROOT / "dags"

#: The official image's AIRFLOW_HOME; Airflow's default dags_folder is {AIRFLOW_HOME}/dags.
IMAGE_AIRFLOW_HOME = "/opt/airflow"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
)
LONG_RUNNING_AIRFLOW_SERVICES = tuple(s for s in AIRFLOW_SERVICES if s != "airflow-init")
#: The Lucca sandboxes: one service per tenant (account) of the stack.
SANDBOX_SERVICES = ("lucca-sandbox", "lucca-sandbox-beta")
OTHER_SERVICES = ("postgres", "redis", "minio", "minio-init", *SANDBOX_SERVICES)
#: Airflow CLI groups that come from a provider bundled in the apache/airflow image.
PROVIDER_CLI_GROUPS = {"celery": "airflow.providers.celery"}
#: What the image's /entrypoint runs by itself when these variables are set.
ENTRYPOINT_COMMANDS = {
    "_AIRFLOW_DB_MIGRATE": ["db", "migrate"],
    "_AIRFLOW_WWW_USER_CREATE": [
        *("users", "create", "--username", "u", "--firstname", "f", "--lastname", "l"),
        *("--email", "e@example.com", "--role", "Admin", "--password", "p"),
    ],
}

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_]\w*))")


def interpolate(text: str) -> str:
    """Compose's variable substitution against an empty environment (``$$`` is a literal ``$``)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        expression = match.group("braced")
        if expression is None:
            return ""
        for operator in (":-", "-"):
            if operator in expression:
                return expression.split(operator, 1)[1]
        for operator in (":?", "?"):
            if operator in expression:
                raise AssertionError(f"${{{expression}}} requires a variable to be set")
        return ""

    return _VARIABLE.sub(substitute, text)


@cache
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open() as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict), "docker-compose.yaml is not a mapping"
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"service {name!r} missing from docker-compose.yaml"
    return services[name]


def env_of(spec: dict[str, Any]) -> dict[str, str]:
    raw = spec.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: interpolate(str(value)) for key, value in raw.items()}


def common_env() -> dict[str, str]:
    return env_of(compose()["x-airflow-common"])


def argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(interpolate(value))
    return [interpolate(str(item)) for item in value]


def script_of(name: str) -> str:
    """The shell script of a ``["/bin/sh" or bash, "-c", script]`` service, interpolated."""
    words = argv(service(name).get("entrypoint")) + argv(service(name).get("command"))
    assert "-c" in words, f"{name} does not run a shell script: {words}"
    return words[words.index("-c") + 1]


def mounts(spec: dict[str, Any]) -> dict[str, str]:
    """Volume target -> source for the short ``source:target[:mode]`` syntax."""
    result = {}
    for volume in spec.get("volumes", []):
        source, target = interpolate(volume).split(":")[:2]
        result[target] = source
    return result


def healthcheck_words(name: str) -> list[str]:
    check = service(name).get("healthcheck") or {}
    test = check.get("test")
    assert test, f"{name} has no healthcheck"
    assert not check.get("disable"), f"{name} disables its healthcheck"
    words = argv(test)
    assert words[0] in ("CMD", "CMD-SHELL"), f"{name}: unexpected healthcheck test {words}"
    return words


def healthcheck_url(name: str) -> str:
    words = healthcheck_words(name)
    urls = [word for word in words if word.startswith("http")]
    assert len(urls) == 1, f"{name}: expected one URL in the healthcheck, got {words}"
    return urls[0]


def conn_env_vars() -> dict[str, str]:
    return {k: v for k, v in common_env().items() if k.startswith("AIRFLOW_CONN_")}


def conn_id_of(env_var: str) -> str:
    return env_var.removeprefix("AIRFLOW_CONN_").lower()


def sandbox_config(monkeypatch: pytest.MonkeyPatch, name: str = "lucca-sandbox") -> Any:
    """The SandboxConfig that the compose command of sandbox service ``name`` builds, through the
    real ``main`` (no server)."""
    from lucca_sandbox import __main__ as sandbox_main

    spec = service(name)
    words = argv(spec.get("command"))
    assert words[0] == "lucca-sandbox", words
    # The parser reads its --api-key and --admin-token defaults from the environment: use the
    # container's, never the test runner's.
    monkeypatch.delenv("LUCCA_SANDBOX_API_KEY", raising=False)
    monkeypatch.delenv("LUCCA_SANDBOX_ADMIN_TOKEN", raising=False)
    for key, value in env_of(spec).items():
        monkeypatch.setenv(key, value)

    captured = []

    class NoServer:
        def __init__(self, config: Any) -> None:
            captured.append(config)

        def start(self) -> None:
            raise OSError("not started by the test")

        def stop(self) -> None:
            pass

    monkeypatch.setattr(sandbox_main, "SandboxServer", NoServer)
    try:
        code = sandbox_main.main(words[1:])
    except SystemExit as exc:
        pytest.fail(f"lucca-sandbox rejects the compose command {words}: exit {exc.code}")
    assert len(captured) == 1, "main() did not reach the server start"
    assert code == 1
    return captured[0]


# --------------------------------------------------------------------------- the compose file


def test_compose_file_parses_and_has_every_service() -> None:
    data = compose()
    assert set(AIRFLOW_SERVICES + OTHER_SERVICES) <= set(data["services"])
    assert "x-airflow-common" in data
    for name, spec in data["services"].items():
        assert spec.get("image") or spec.get("build"), f"{name} has neither image nor build"
    declared = set(data.get("volumes") or {})
    for name, spec in data["services"].items():
        for source in mounts(spec).values():
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source!r}"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_service_uses_the_built_image_and_the_common_block(name: str) -> None:
    common = compose()["x-airflow-common"]
    spec = service(name)
    build = spec.get("build")
    assert build == common["build"], f"{name} does not build the project image"
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert spec.get("image") == common["image"]
    env = env_of(spec)
    missing = {k: v for k, v in common_env().items() if env.get(k) != v}
    assert not missing, f"{name} lacks or overrides common settings: {sorted(missing)}"
    assert mounts(spec) == mounts(common)


@pytest.mark.parametrize("name", SANDBOX_SERVICES)
def test_lucca_sandbox_runs_the_project_image_outside_the_airflow_entrypoint(name: str) -> None:
    common = compose()["x-airflow-common"]
    spec = service(name)
    assert spec.get("build") == common["build"]
    assert spec.get("image") == common["image"]
    # The image's /entrypoint would run `airflow lucca-sandbox ...`.
    entrypoint = argv(spec.get("entrypoint"))
    assert entrypoint, "lucca-sandbox must override the image's /entrypoint"
    assert not any(word.endswith("/entrypoint") for word in entrypoint), entrypoint


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_dags_folder_is_mounted_where_airflow_reads_it(name: str) -> None:
    spec = service(name)
    dags_folder = env_of(spec).get("AIRFLOW__CORE__DAGS_FOLDER", f"{IMAGE_AIRFLOW_HOME}/dags")
    assert mounts(spec).get(dags_folder) == "./dags"
    assert DAGS.is_dir()
    assert (DAGS / "lucca_common.py").is_file()
    assert sorted(p.name for p in DAGS.glob("lucca_realized_trainings_*.py"))


# --------------------------------------------------------------------------- lucca-sandbox


def test_lucca_sandbox_console_script_is_declared_and_installed() -> None:
    # The sandbox is its own distribution (sandbox/pyproject.toml), installed into the image.
    scripts = tomllib.loads((ROOT / "sandbox" / "pyproject.toml").read_text())["project"]["scripts"]
    for name in SANDBOX_SERVICES:
        assert argv(service(name)["command"])[0] in scripts
    assert scripts["lucca-sandbox"] == "lucca_sandbox.__main__:main"
    (entry_point,) = importlib.metadata.entry_points(group="console_scripts", name="lucca-sandbox")
    from lucca_sandbox.__main__ import main

    assert entry_point.load() is main


def test_lucca_sandbox_accepts_the_compose_command(monkeypatch: pytest.MonkeyPatch) -> None:
    config = sandbox_config(monkeypatch)
    assert config.host == "0.0.0.0"  # reachable from the other containers
    assert config.port == 8089
    assert config.records == 20000
    assert (config.start.isoformat(), config.end.isoformat()) == ("2024-01-01", "2026-12-31")
    assert config.requests_per_minute == 50


@pytest.mark.parametrize("name", SANDBOX_SERVICES)
def test_lucca_sandbox_is_exposed_on_purpose_with_its_own_key_and_admin_token(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """0.0.0.0 needs --allow-remote and a non-default key; the admin token is set, not random."""
    from lucca_sandbox import DEFAULT_API_KEY

    spec = service(name)
    assert "--allow-remote" in argv(spec["command"])
    config = sandbox_config(monkeypatch, name)
    assert config.allow_remote is True
    assert config.api_key != DEFAULT_API_KEY
    env = env_of(spec)
    assert config.api_key == env["LUCCA_SANDBOX_API_KEY"]
    # Passed explicitly, so it is known to whoever reconfigures the sandbox from the host.
    assert config.admin_token == env["LUCCA_SANDBOX_ADMIN_TOKEN"]
    assert config.admin_token
    assert config.admin_token != config.api_key
    # Published on the host's loopback only; the other containers use the compose network.
    (published,) = spec["ports"]
    address, host_port, container_port = published.split(":")
    assert (address, int(container_port)) == ("127.0.0.1", config.port)
    assert int(host_port) > 0


@pytest.mark.parametrize("conn_id", ["lucca_default", "lucca_alpha", "lucca_beta"])
def test_sandbox_healthcheck_and_lucca_connection_work_against_the_compose_sandbox(
    monkeypatch: pytest.MonkeyPatch, conn_id: str
) -> None:
    """Run the connection's sandbox as configured by compose (on loopback) and use it as the stack
    would: its healthcheck answers, and the connection's Test button (key included) passes."""
    from airflow_provider_lucca.hooks.lucca import LuccaHook
    from lucca_sandbox import SandboxServer

    env_var = f"AIRFLOW_CONN_{conn_id.upper()}"
    conn = json.loads(common_env()[env_var])
    name = sandbox_service_of(conn)
    config = sandbox_config(monkeypatch, name)
    health = urlsplit(healthcheck_url(name))
    assert health.port == config.port
    assert urlsplit(conn["host"]).port == config.port

    with SandboxServer(dataclasses.replace(config, host="127.0.0.1", port=0)) as server:
        with urllib.request.urlopen(server.url + health.path, timeout=10) as response:
            assert response.status == 200
            assert json.load(response) == {"status": "ok"}
        monkeypatch.setenv(env_var, json.dumps({**conn, "host": server.url}))
        ok, message = LuccaHook(conn_id).test_connection()
    assert ok, message


def sandbox_service_of(conn: dict[str, Any]) -> str:
    """The sandbox service a Lucca connection (its JSON form) points at."""
    host = urlsplit(conn["host"]).hostname
    assert host in SANDBOX_SERVICES, f"{conn['host']} is not a sandbox service of the stack"
    return str(host)


# --------------------------------------------------------------------------- connections


def test_every_airflow_conn_is_a_valid_connection_of_an_installed_type() -> None:
    from airflow.sdk import Connection
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    conns = conn_env_vars()
    assert {"AIRFLOW_CONN_LUCCA_DEFAULT", "AIRFLOW_CONN_AWS_MINIO"} <= set(conns)
    hooks = ProvidersManagerTaskRuntime().hooks
    for env_var, value in conns.items():
        if value.startswith("{"):
            conn = Connection.from_json(value, conn_id=conn_id_of(env_var))
        else:
            conn = Connection.from_uri(value, conn_id=conn_id_of(env_var))
        if conn.conn_type == "redis":
            # The shared budget's Redis: read by this provider (hooks/budget.py) with the redis
            # package, no Redis provider needed (the apache/airflow image has one for the UI).
            assert env_var == "AIRFLOW_CONN_LUCCA_BUDGET", env_var
            continue
        assert conn.conn_type in hooks, f"{env_var}: no installed provider for {conn.conn_type!r}"


def test_lucca_connection_builds_a_client_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_lucca.hooks.lucca import LuccaHook

    env = common_env()
    monkeypatch.setenv("AIRFLOW_CONN_LUCCA_DEFAULT", env["AIRFLOW_CONN_LUCCA_DEFAULT"])
    assert env["LUCCA_CONN_ID"] == "lucca_default" == LuccaHook.default_conn_name
    config = LuccaHook(env["LUCCA_CONN_ID"]).client_config
    # Plain http to a container name is only accepted thanks to allow_plain_http.
    assert config.base_url == "http://lucca-sandbox:8089"
    assert config.allow_plain_http is True
    assert urlsplit(config.base_url).hostname in compose()["services"]
    assert 0 < config.requests_per_minute <= sandbox_rate_limit()


def sandbox_rate_limit(name: str = "lucca-sandbox") -> int:
    words = argv(service(name)["command"])
    return int(words[words.index("--requests-per-minute") + 1])


def test_lucca_connection_uses_the_sandbox_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = json.loads(common_env()["AIRFLOW_CONN_LUCCA_DEFAULT"])
    assert conn["password"] == sandbox_config(monkeypatch).api_key


# --------------------------------------------------------------------------- tenants


def compose_tenants() -> list[Any]:
    from airflow_provider_lucca.tenants import parse_tenants

    env = common_env()
    assert "AIRFLOW_VAR_LUCCA_TENANTS" in env, "the stack has no tenant list"
    return parse_tenants(env["AIRFLOW_VAR_LUCCA_TENANTS"], source="AIRFLOW_VAR_LUCCA_TENANTS")


def test_the_tenant_list_parses_and_names_two_accounts() -> None:
    from airflow_provider_lucca.tenants import TENANTS_VARIABLE

    # AIRFLOW_VAR_<NAME> is how Airflow reads the Variable from the environment.
    assert TENANTS_VARIABLE == "lucca_tenants"
    tenants = compose_tenants()
    assert [(t.name, t.conn_id) for t in tenants] == [
        ("alpha", "lucca_alpha"),
        ("beta", "lucca_beta"),
    ]


def test_every_tenant_reads_its_own_sandbox_with_its_key_within_its_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each tenant's connection is a Lucca connection to a sandbox service of the file, with that
    sandbox's key, paced at most at that sandbox's limit; no two tenants share a sandbox."""
    from airflow_provider_lucca.hooks.lucca import LuccaHook

    env = common_env()
    sandboxes = []
    for tenant in compose_tenants():
        env_var = f"AIRFLOW_CONN_{tenant.conn_id.upper()}"
        assert env_var in env, f"tenant {tenant.name}: no {env_var} in the stack"
        conn = json.loads(env[env_var])
        name = sandbox_service_of(conn)
        sandboxes.append(name)
        sandbox = sandbox_config(monkeypatch, name)
        assert conn["password"] == sandbox.api_key, tenant.name
        monkeypatch.setenv(env_var, env[env_var])
        config = LuccaHook(tenant.conn_id).client_config
        assert config.base_url == f"http://{name}:{sandbox.port}"
        assert config.allow_plain_http is True
        assert 0 < config.requests_per_minute <= sandbox.requests_per_minute, tenant.name
    assert sorted(sandboxes) == sorted(SANDBOX_SERVICES)  # one account each, none left over


def test_each_sandbox_is_its_own_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """Distinct data (seed), a rate limit each, distinct keys, admin tokens and host ports."""
    configs = {name: sandbox_config(monkeypatch, name) for name in SANDBOX_SERVICES}
    for name, config in configs.items():
        assert config.requests_per_minute > 0, f"{name} has no rate limit"
        assert config.records > 0, name
    for attribute in ("seed", "api_key", "admin_token"):
        values = [getattr(config, attribute) for config in configs.values()]
        assert len(set(values)) == len(values), f"the sandboxes share a {attribute}: {values}"
    host_ports = [service(name)["ports"][0].split(":")[1] for name in SANDBOX_SERVICES]
    assert len(set(host_ports)) == len(host_ports), host_ports
    limits = {name: config.requests_per_minute for name, config in configs.items()}
    assert len(set(limits.values())) > 1, f"every tenant has the same limit: {limits}"


def test_the_single_account_fallback_is_tenant_alpha(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lucca_default`` (read when the Variable is absent) is alpha's account: same sandbox, same
    key, same requests_per_minute, so both connections take their slots from one budget."""
    from airflow_provider_lucca.client.budget import budget_key
    from airflow_provider_lucca.hooks.lucca import LuccaHook

    env = common_env()
    configs = {}
    for conn_id in ("lucca_default", "lucca_alpha", "lucca_beta"):
        env_var = f"AIRFLOW_CONN_{conn_id.upper()}"
        monkeypatch.setenv(env_var, env[env_var])
        configs[conn_id] = LuccaHook(conn_id).client_config
    default, alpha, beta = configs.values()
    assert (default.base_url, default.api_key) == (alpha.base_url, alpha.api_key)
    assert default.requests_per_minute == alpha.requests_per_minute
    assert budget_key(default.base_url) == budget_key(alpha.base_url) != budget_key(beta.base_url)


def budget_connection() -> Any:
    from airflow.sdk import Connection

    env = common_env()
    conn_id = env.get("AIRFLOW__LUCCA__BUDGET_CONN_ID")
    assert conn_id, "the stack sets no [lucca] budget_conn_id: budgets would be per process"
    env_var = f"AIRFLOW_CONN_{conn_id.upper()}"
    assert env_var in env, f"[lucca] budget_conn_id={conn_id!r} but no {env_var}"
    return Connection.from_uri(env[env_var], conn_id=conn_id)


def test_the_budget_connection_is_the_compose_redis_on_its_own_database() -> None:
    conn = budget_connection()
    assert conn.conn_type == "redis"
    assert conn.host == "redis"
    assert conn.port in service("redis")["expose"]
    broker = urlsplit(common_env()["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.hostname == conn.host
    broker_db = int(broker.path.strip("/") or 0)
    budget_db = int(conn.schema or 0)
    assert budget_db != broker_db, "the budgets would share Celery's broker database"


def test_the_provider_takes_budget_slots_in_the_configured_redis_database(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the provider's own reading of ``[lucca] budget_conn_id`` and the connection (the
    compose one, on a local redis-server): a tenant's slots land in the budget database, not in
    the broker's."""
    import redis

    from airflow_provider_lucca.client.budget import budget_key
    from airflow_provider_lucca.hooks.budget import budget_conn_id, shared_budget
    from airflow_provider_lucca.hooks.lucca import LuccaHook

    env = common_env()
    compose_url = urlsplit(env[f"AIRFLOW_CONN_{env['AIRFLOW__LUCCA__BUDGET_CONN_ID'].upper()}"])
    local = urlsplit(redis_url)
    monkeypatch.setenv("AIRFLOW__LUCCA__BUDGET_CONN_ID", env["AIRFLOW__LUCCA__BUDGET_CONN_ID"])
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{env['AIRFLOW__LUCCA__BUDGET_CONN_ID'].upper()}",
        compose_url._replace(netloc=local.netloc).geturl(),
    )
    monkeypatch.setenv("AIRFLOW_CONN_LUCCA_BETA", env["AIRFLOW_CONN_LUCCA_BETA"])
    assert budget_conn_id() == "lucca_budget"
    config = LuccaHook("lucca_beta").client_config
    budget = shared_budget(config.base_url, config.requests_per_minute)
    assert budget is not None
    budget.reserve()

    key = budget_key(config.base_url)
    budget_db = int(budget_connection().schema)
    broker_db = int(urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).path.strip("/") or 0)
    with redis.Redis.from_url(f"{redis_url}/{budget_db}") as in_budget_db:
        assert in_budget_db.exists(key)
        in_budget_db.delete(key)  # the session's redis-server is shared
    with redis.Redis.from_url(f"{redis_url}/{broker_db}") as in_broker_db:
        assert not in_broker_db.exists(key)


def test_the_pool_has_a_slot_per_tenant_when_budgets_are_shared() -> None:
    """One slot would serialise every tenant; with the shared budget pacing each account, the pool
    only says how many extractions run at once (dags/lucca_common.py, LUCCA_POOL)."""
    assert budget_connection()
    pools = [c for c in init_airflow_commands() if c[:2] == ["pools", "set"]]
    (pool,) = pools
    assert pool[2] == common_env()["LUCCA_POOL"]
    assert int(pool[3]) >= len(compose_tenants())


@pytest.mark.slow
def test_aws_connection_and_output_path_reach_the_minio_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import ObjectStoragePath

    env = common_env()
    output = env["LUCCA_OUTPUT_PATH"]
    conn_id = urlsplit(output).username
    assert output.startswith("s3://"), output
    assert conn_id, f"{output} names no connection"
    assert f"AIRFLOW_CONN_{conn_id.upper()}" in env, f"no connection {conn_id!r} in the stack"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", env[f"AIRFLOW_CONN_{conn_id.upper()}"])

    minio_env = env_of(service("minio"))
    conn_config = S3Hook(aws_conn_id=conn_id).conn_config
    endpoint = conn_config.get_service_endpoint_url(service_name="s3")
    assert conn_config.aws_access_key_id == minio_env["MINIO_ROOT_USER"]
    assert conn_config.aws_secret_access_key == minio_env["MINIO_ROOT_PASSWORD"]
    assert len(minio_env["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO refuses shorter root passwords
    assert conn_config.region_name
    assert urlsplit(endpoint).hostname == "minio"
    assert f"{urlsplit(endpoint).port}:9000" in service("minio")["ports"]  # MinIO's API port

    path = ObjectStoragePath(output)
    assert (path.protocol, path.conn_id) == ("s3", conn_id)
    assert path.fs.endpoint_url == endpoint

    script = script_of("minio-init")
    alias = re.search(r"mc alias set (\S+) (\S+) ", script)
    bucket = re.search(r"mc mb (?:--\S+ )*(\S+)/(\S+)", script)
    assert alias, script
    assert bucket, script
    assert alias.group(2) == endpoint
    assert bucket.group(1) == alias.group(1)
    assert bucket.group(2) == path.bucket == "lake"
    assert env_of(service("minio-init")) == minio_env


@pytest.mark.slow
def test_example_dags_read_the_stack_settings() -> None:
    """Parse the DAGs with the compose environment (in a subprocess: the settings are read at
    import time, and other tests import lucca_common with the defaults), and resolve the accounts
    a run extracts as the DAGs' ``tenants`` task does: both tenants of the Variable, or without
    it the one account of ``LUCCA_CONN_ID``."""
    env = common_env()
    settings = {
        k: v for k, v in env.items() if k.startswith(("LUCCA_", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
    }
    assert {"LUCCA_OUTPUT_PATH", "LUCCA_CONN_ID", "LUCCA_POOL"} <= set(settings)
    probe = f"""
import json, os, sys
sys.path.insert(0, {str(DAGS)!r})
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(DAGS)!r})

def tasks(name):
    return {{
        dag_id: {{"output_path": task.output_path, "pool": task.pool}}
        for dag_id, dag in bag.dags.items()
        for task in dag.tasks
        if task.task_id.rsplit(".", 1)[-1] == name
    }}

from lucca_common import tenant_targets
fan_out = tenant_targets()
os.environ.pop("AIRFLOW_VAR_LUCCA_TENANTS")
single = tenant_targets()
print(json.dumps({{"errors": {{k: str(v) for k, v in bag.import_errors.items()}},
                  "extracts": tasks("extract"), "sweeps": tasks("sweep_unlisted_files"),
                  "fan_out": fan_out, "single": single}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert len(parsed["extracts"]) == 2, parsed
    for extract in parsed["extracts"].values():
        assert extract == {"output_path": env["LUCCA_OUTPUT_PATH"], "pool": env["LUCCA_POOL"]}
    assert list(parsed["sweeps"].values()) == [
        {"output_path": env["LUCCA_OUTPUT_PATH"], "pool": env["LUCCA_POOL"]}
    ]
    assert [(t["tenant"], t["lucca_conn_id"]) for t in parsed["fan_out"]] == [
        (tenant.name, tenant.conn_id) for tenant in compose_tenants()
    ]
    assert [(t["tenant"], t["lucca_conn_id"]) for t in parsed["single"]] == [
        (None, env["LUCCA_CONN_ID"])
    ]
    for target in parsed["fan_out"] + parsed["single"]:
        assert f"AIRFLOW_CONN_{target['lucca_conn_id'].upper()}" in env


def test_dag_start_date_and_catchup_defaults_are_valid() -> None:
    from datetime import date

    env = common_env()
    date.fromisoformat(env["LUCCA_START_DATE"])
    assert env["LUCCA_CATCHUP"].strip().lower() in ("1", "true", "yes", "0", "false", "no")


# --------------------------------------------------------------------------- airflow-init


def init_airflow_commands() -> list[list[str]]:
    """The ``/entrypoint airflow ...`` lines of the airflow-init script."""
    commands = []
    for line in script_of("airflow-init").splitlines():
        words = shlex.split(line, comments=True)
        if len(words) >= 2 and words[0].endswith("/entrypoint") and words[1] == "airflow":
            commands.append([w for w in words[2:] if not w.startswith(">")])
    return commands


def test_airflow_init_creates_the_pool_the_dags_use() -> None:
    pools = [c for c in init_airflow_commands() if c[:2] == ["pools", "set"]]
    assert len(pools) == 1, init_airflow_commands()
    name, slots = pools[0][2], pools[0][3]
    assert name == common_env()["LUCCA_POOL"] == "lucca_api"
    assert int(slots) >= 1
    assert env_of(service("airflow-init")).get("_AIRFLOW_DB_MIGRATE") == "true"


@pytest.mark.parametrize("name", ["airflow-init", "minio-init"])
def test_init_scripts_are_valid_shell(name: str) -> None:
    shell = argv(service(name).get("entrypoint"))[0]
    assert shell in ("/bin/bash", "/bin/sh"), shell
    executable = shutil.which(Path(shell).name)
    assert executable, f"{shell} is needed to check the {name} script"
    result = subprocess.run(
        [executable, "-n", "-c", script_of(name)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_airflow_init_writes_the_login_of_the_simple_auth_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import (
        SimpleAuthManager,
        SimpleAuthManagerRole,
    )
    from airflow.sdk._shared.module_loading import import_string

    env = common_env()
    assert issubclass(import_string(env["AIRFLOW__CORE__AUTH_MANAGER"]), SimpleAuthManager)
    # Only the FAB auth manager has `airflow users create` (see the CLI test).
    init_env = env_of(service("airflow-init"))
    assert "_AIRFLOW_WWW_USER_CREATE" not in init_env

    # Run the script's Python step with the password file redirected to tmp_path.
    step = re.search(r"python - <<'PY'\n(.*?)\nPY\n", script_of("airflow-init"), re.S)
    assert step, "airflow-init does not write the password file"
    passwords_file = tmp_path / "passwords.json"
    result = subprocess.run(
        [sys.executable, "-c", step.group(1)],
        env={**init_env, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords_file))
    monkeypatch.setenv(
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    )
    (user,) = SimpleAuthManager.get_users()
    assert user.username == init_env["_AIRFLOW_WWW_USER_USERNAME"] == "airflow"
    assert SimpleAuthManagerRole[user.role.upper()] is SimpleAuthManagerRole.ADMIN
    expected = {"airflow": init_env["_AIRFLOW_WWW_USER_PASSWORD"]}
    assert SimpleAuthManager.get_passwords() == expected
    # What the API server does at start-up: keep the password, generate none.
    SimpleAuthManager().init()
    assert SimpleAuthManager.get_passwords() == expected

    # The API server reads the file airflow-init wrote: same volume in both containers.
    configured = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    init_volume = mounts(service("airflow-init")).get(str(configured.parent))
    assert init_volume, f"{configured.parent} is not a volume of airflow-init"
    assert init_volume == mounts(service("airflow-apiserver")).get(str(configured.parent))


# --------------------------------------------------------------------------- Airflow CLI


def airflow_commands() -> list[list[str]]:
    """Every Airflow CLI invocation of the stack, without the leading ``airflow``."""
    commands = []
    for name in AIRFLOW_SERVICES:
        spec = service(name)
        if "entrypoint" not in spec:  # the image's /entrypoint runs `airflow <command>`
            commands.append(argv(spec.get("command")))
        words = healthcheck_words(name) if "healthcheck" in spec else []
        if words and words[0] == "CMD-SHELL":
            for part in re.split(r"\|\||&&|;", words[1]):
                shell_words = shlex.split(part)
                if shell_words and shell_words[0] == "airflow":
                    commands.append(shell_words[1:])
        for variable, command in ENTRYPOINT_COMMANDS.items():
            if env_of(spec).get(variable):
                commands.append(command)
    return commands + init_airflow_commands()


def test_airflow_commands_exist_in_the_airflow_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from airflow.cli.cli_parser import get_parser

    commands = airflow_commands()
    groups = {
        tuple(c[:2]) if c[0] in ("jobs", "pools", "db", "config", "celery") else (c[0],)
        for c in commands
    }
    expected = {("api-server",), ("scheduler",), ("dag-processor",), ("triggerer",),
                ("celery", "worker"), ("jobs", "check"), ("pools", "set"), ("db", "migrate"),
                ("version",), ("config", "list")}  # fmt: skip
    assert expected <= groups, f"commands not found in the compose file: {expected - groups}"

    parser = get_parser()
    for command in commands:
        if command[0] in PROVIDER_CLI_GROUPS:
            continue  # see test_provider_cli_commands_exist
        try:
            parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"`airflow {shlex.join(command)}` is not a valid Airflow 3.3 command")
    capsys.readouterr()


@pytest.mark.slow
def test_provider_cli_commands_exist() -> None:
    """``celery worker`` comes from the celery provider, bundled in the apache/airflow image."""
    commands = [c for c in airflow_commands() if c[0] in PROVIDER_CLI_GROUPS]
    assert commands == [["celery", "worker"]]
    for command in commands:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *command, "--help"],
            env={**os.environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]


# --------------------------------------------------------------------------- wiring


def test_depends_on_targets_exist_with_valid_conditions() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        depends = spec.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            condition = rule.get("condition", "service_started")
            if condition == "service_healthy":
                healthcheck_words(target)
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} is not one-shot"
            else:
                assert condition == "service_started", f"{name}: bad condition {condition!r}"


def test_start_up_order() -> None:
    def healthy(name: str, target: str) -> bool:
        rule = (service(name).get("depends_on") or {}).get(target) or {}
        return rule.get("condition") == "service_healthy"

    def completed(name: str, target: str) -> bool:
        rule = (service(name).get("depends_on") or {}).get(target) or {}
        return rule.get("condition") == "service_completed_successfully"

    for name in AIRFLOW_SERVICES:
        assert healthy(name, "postgres"), name
        assert healthy(name, "redis"), name
    for name in LONG_RUNNING_AIRFLOW_SERVICES:
        assert completed(name, "airflow-init"), name
    # The tasks run on the worker: the bucket and the sandbox must be there first.
    assert completed("airflow-worker", "minio-init")
    for name in SANDBOX_SERVICES:
        assert healthy("airflow-worker", name)
    assert healthy("airflow-worker", "airflow-apiserver")
    assert healthy("minio-init", "minio")


@pytest.mark.parametrize(
    "name", ["postgres", "redis", "minio", *SANDBOX_SERVICES, *LONG_RUNNING_AIRFLOW_SERVICES]
)
def test_long_running_services_have_a_healthcheck(name: str) -> None:
    healthcheck_words(name)


@pytest.mark.slow
def test_apiserver_healthcheck_and_execution_api_url_match_the_api_server() -> None:
    from airflow.api_fastapi.core_api.routes.public import public_router

    health = urlsplit(healthcheck_url("airflow-apiserver"))
    assert health.path in {route.path for route in public_router.routes}
    assert f"{health.port}:{health.port}" in service("airflow-apiserver")["ports"]
    execution = urlsplit(common_env()["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert (execution.hostname, execution.port) == ("airflow-apiserver", health.port)
    assert execution.path == "/execution/"


def test_scheduler_healthcheck_uses_the_scheduler_health_server() -> None:
    from airflow.configuration import conf

    env = common_env()
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"].lower() == "true"
    port = env.get("AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT") or conf.get(
        "scheduler", "scheduler_health_check_server_port"
    )
    health = urlsplit(healthcheck_url("airflow-scheduler"))
    assert (health.port, health.path) == (int(port), "/health")


def test_metadata_db_and_broker_point_at_the_services() -> None:
    env = common_env()
    postgres = env_of(service("postgres"))
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        url = urlsplit(env[key])
        assert url.hostname == "postgres", key
        assert url.username == postgres["POSTGRES_USER"], key
        assert url.password == postgres["POSTGRES_PASSWORD"], key
        assert url.path == f"/{postgres['POSTGRES_DB']}"
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.scheme, broker.hostname) == ("redis", "redis")
    assert broker.port in service("redis")["expose"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_stack_settings_asked_for_by_the_provider() -> None:
    env = common_env()
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"  # the Lucca form's Test button
    # Every component signs or checks the same tokens.
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert env["AIRFLOW__API__SECRET_KEY"]


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_dockerfile_pins_airflow_3_3_and_a_supported_python() -> None:
    from packaging.specifiers import SpecifierSet

    froms = [arg for op, arg in dockerfile_instructions() if op == "FROM"]
    assert len(froms) == 1, froms
    match = re.fullmatch(r"apache/airflow:(3\.3\.\d+)-python(3\.\d+)", froms[0])
    assert match, f"FROM must pin apache/airflow:3.3.x-python3.y, got {froms[0]!r}"
    airflow_version, python_version = match.groups()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"{python_version}.0" in SpecifierSet(requires)
    args = dict(arg.split("=", 1) for op, arg in dockerfile_instructions() if op == "ARG")
    constraints = args.get("AIRFLOW_CONSTRAINTS_URL", "")
    assert f"constraints-{airflow_version}/constraints-{python_version}.txt" in constraints


def test_dockerfile_installs_the_project_with_the_s3_extra_as_the_airflow_user() -> None:
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    user = "root"
    installs = []
    for op, arg in dockerfile_instructions():
        if op == "USER":
            user = arg
        elif op == "RUN" and "pip install" in arg:
            installs.append((user, shlex.split(arg)))
    assert len(installs) == 1, installs
    user, words = installs[0]
    assert user == "airflow"
    assert "--no-cache-dir" in words
    assert "apache-airflow==${AIRFLOW_VERSION}" in words  # pip must not change the image's Airflow
    targets = [w for w in words if w.startswith(".[")]
    assert len(targets) == 1, words
    extras = set(targets[0][2:-1].split(","))
    assert "s3" in extras
    assert extras <= set(optional)


def test_dockerfile_copies_what_the_build_needs_and_dockerignore_keeps_it() -> None:
    ignored = [
        line.strip().strip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (".venv", ".git", "data", ".pytest_cache", ".mypy_cache", ".ruff_cache"):
        assert required in ignored, f".dockerignore does not exclude {required}"
    sources = []
    for op, arg in dockerfile_instructions():
        if op == "COPY":
            words = [w for w in arg.split() if not w.startswith("--")]
            sources += words[:-1]
    assert {"pyproject.toml", "README.md", "airflow_provider_lucca"} <= set(sources)
    import fnmatch

    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing"
        hits = [p for p in ignored if fnmatch.fnmatch(source, p.removeprefix("**/"))]
        assert not hits, f"COPY {source} is excluded by .dockerignore {hits}"


# --------------------------------------------------------------------------- docker compose


def test_compose_file_follows_the_compose_specification() -> None:
    """The Compose Specification's JSON schema (copied into tests/spec from the compose-spec
    project, as Debian's docker-compose ships it) checks what no engine is here to check."""
    import jsonschema

    schema = json.loads((ROOT / "tests" / "spec" / "compose-spec.schema.json").read_text())
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(
            yaml.safe_load(COMPOSE_FILE.read_text())
        )
    ]
    assert errors == []
