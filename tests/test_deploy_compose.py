"""deploy/compose.postgres.yaml (and compose.sqlite.yaml) are consistent.

No container runtime runs the compose files here (no Docker engine, and no image registry for
the postgres and nginx images). The files are read as Compose reads them (tests/composefile.py)
and checked: every reference resolves, every PIXEL_* name is a setting, and each instance's
environment, image ENV + env_file + environment, is accepted by the server.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nginxtest
import pytest
from composefile import DEPLOY, MissingVariable, container_env, load, seconds

from pixel_server.config import Settings

POSTGRES_FILE = "compose.postgres.yaml"
SQLITE_FILE = "compose.sqlite.yaml"
FILES = (POSTGRES_FILE, SQLITE_FILE)
IMAGE = "pixel-server:latest"
# what deploy/.env holds (the values only need the shape of real ones)
SECRETS = {"PIXEL_SECRET_KEY": "k" * 43, "POSTGRES_PASSWORD": "p" * 32}
SETTING_NAMES = {f.metadata["env"] for f in dataclasses.fields(Settings)}


def compose(name: str = POSTGRES_FILE) -> dict[str, Any]:
    return load(name, SECRETS)


def services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = doc["services"]
    return result


def instances(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run `pixel-server serve` (the image's CMD: no command of their own)."""
    return {
        name: svc
        for name, svc in services(doc).items()
        if svc.get("image") == IMAGE and "command" not in svc
    }


def settings_of(svc: dict[str, Any]) -> Settings:
    return Settings.from_env(container_env(svc))


def named_volumes(svc: dict[str, Any]) -> dict[str, str]:
    """Named volume -> mount point (bind mounts, ./path, left out)."""
    mounts = (spec.split(":") for spec in svc.get("volumes", []))
    return {m[0]: m[1] for m in mounts if not m[0].startswith((".", "/"))}


def test_compose_refuses_to_start_without_the_shared_secrets() -> None:
    """Without deploy/.env's two secrets the file does not load (Compose stops with the
    message): no instance ever starts on a key of its own, or without the database password."""
    for missing in SECRETS:
        env = {k: v for k, v in SECRETS.items() if k != missing}
        with pytest.raises(MissingVariable, match=missing):
            load(POSTGRES_FILE, env)
        with pytest.raises(MissingVariable, match=missing):
            load(POSTGRES_FILE, {**env, missing: ""})


@pytest.mark.parametrize("name", FILES)
def test_every_reference_names_something_defined(name: str) -> None:
    """depends_on, networks and volumes name services, networks and volumes of the file, and
    every declared network and volume is used."""
    doc = compose(name)
    used_networks: set[str] = set()
    used_volumes: set[str] = set()
    for svc_name, svc in services(doc).items():
        for dependency in svc.get("depends_on", {}):
            assert dependency in services(doc), f"{svc_name} depends on unknown {dependency}"
        used_networks.update(svc.get("networks", []))
        used_volumes.update(named_volumes(svc))
        for spec in svc.get("volumes", []):
            source = spec.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), spec
    assert used_networks == set(doc.get("networks", {}))
    assert used_volumes == set(doc.get("volumes", {}))


@pytest.mark.parametrize("name", FILES)
def test_every_pixel_variable_is_a_real_setting(name: str) -> None:
    """Each PIXEL_* name a container gets (image, env_file, environment) is a setting."""
    for svc_name, svc in services(compose(name)).items():
        if svc.get("image") != IMAGE:
            assert not [key for key in svc.get("environment", {}) if key.startswith("PIXEL_")]
            continue
        unknown = {key for key in container_env(svc) if key.startswith("PIXEL_")} - SETTING_NAMES
        assert not unknown, f"{svc_name}: not settings: {sorted(unknown)}"


def test_the_env_example_names_only_settings() -> None:
    """Every PIXEL_* line of deploy/pixel.env.example, commented out or not, is a setting."""
    text = (DEPLOY / "pixel.env.example").read_text()
    names = set(re.findall(r"^#?(PIXEL_\w+)=", text, re.M))
    assert "PIXEL_DATABASE_URL" in names
    assert names - SETTING_NAMES == set()


@pytest.mark.parametrize("name", FILES)
def test_each_pixel_container_gets_settings_the_server_accepts(name: str) -> None:
    """The image's ENV, the env_file (deploy/pixel.env.example as documented) and the
    file's environment together validate: e.g. the image's PIXEL_DB is cleared where
    PIXEL_DATABASE_URL is set (naming both is refused)."""
    pixel = [svc for svc in services(compose(name)).values() if svc.get("image") == IMAGE]
    assert pixel
    for svc in pixel:
        settings = settings_of(svc)
        assert settings.host == "0.0.0.0"
        assert settings.store.kind == ("postgresql" if name == POSTGRES_FILE else "sqlite")


@pytest.mark.parametrize("name", FILES)
def test_stop_grace_period_covers_graceful_and_drain(name: str) -> None:
    """The engine's SIGKILL comes after PIXEL_GRACEFUL_TIMEOUT + PIXEL_DRAIN_TIMEOUT."""
    for svc in instances(compose(name)).values():
        settings = settings_of(svc)
        assert svc["stop_signal"] == "SIGTERM"
        grace = seconds(svc["stop_grace_period"])
        assert grace > settings.graceful_timeout + settings.drain_timeout


def test_instances_share_the_database_and_the_key_and_keep_their_own_files() -> None:
    """Two instances: one database (the postgres service), one signing key (from deploy/.env,
    never generated), and each its own volume at PIXEL_DATA_DIR, where its spill journals
    survive a restart of the container."""
    doc = compose()
    found = instances(doc)
    assert len(found) == 2
    settings = {name: settings_of(svc) for name, svc in found.items()}
    assert {s.secret_key for s in settings.values()} == {SECRETS["PIXEL_SECRET_KEY"]}
    urls = {s.database_url for s in settings.values()}
    assert len(urls) == 1
    url = urlsplit(urls.pop())
    assert (url.hostname, url.port, url.password) == (
        "postgres",
        5432,
        SECRETS["POSTGRES_PASSWORD"],
    )
    postgres = services(doc)["postgres"]["environment"]
    assert url.username == postgres["POSTGRES_USER"]
    assert url.path == f"/{postgres['POSTGRES_DB']}"
    assert postgres["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    volumes: list[str] = []
    for name, svc in found.items():
        data = Path(settings[name].data_dir)
        spill = settings[name].spill_path
        assert spill is not None
        assert data in spill.parents
        mine = [vol for vol, mount in named_volumes(svc).items() if mount == str(data)]
        assert len(mine) == 1, f"{name}: no volume at {data}"
        volumes += mine
    assert len(set(volumes)) == len(volumes), "instances share a data volume"
    assert named_volumes(services(doc)["postgres"]) == {"pg-data": "/var/lib/postgresql/data"}


def test_only_nginx_is_reachable_and_only_its_network_is_trusted() -> None:
    """nginx alone publishes a port (80 -> the 8080 nginx.conf listens on); the instances
    trust X-Forwarded-For from the edge network's subnet, which only nginx and the
    instances are on; the database network holds only PostgreSQL and its clients."""
    doc = compose()
    published = {name: svc["ports"] for name, svc in services(doc).items() if "ports" in svc}
    assert published == {"nginx": ["80:8080"]}
    assert "listen 8080 default_server;" in nginxtest.CONF.read_text()
    networks = doc["networks"]
    assert networks["edge"]["internal"] is True
    assert networks["db"]["internal"] is True
    (edge,) = networks["edge"]["ipam"]["config"]
    on_edge = {name for name, svc in services(doc).items() if "edge" in svc.get("networks", [])}
    assert on_edge == {"nginx", *instances(doc)}
    on_db = {name for name, svc in services(doc).items() if "db" in svc.get("networks", [])}
    assert on_db == {"postgres", "migrate", *instances(doc)}
    assert services(doc)["postgres"]["networks"] == ["db"]
    for svc in instances(doc).values():
        trusted = settings_of(svc).trusted_proxies
        assert ipaddress.ip_network(trusted) == ipaddress.ip_network(edge["subnet"])


def test_migrate_runs_once_before_the_instances() -> None:
    """`pixel-server migrate` is a one-shot after PostgreSQL is healthy; the instances wait
    for it to exit 0, and depend on postgres themselves so that they stop (and drain) first."""
    doc = compose()
    migrate = services(doc)["migrate"]
    assert migrate["command"] == ["pixel-server", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert settings_of(migrate).database_url == settings_of(services(doc)["pixel1"]).database_url
    for svc in instances(doc).values():
        assert svc["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }


def test_healthchecks_probe_readiness() -> None:
    """Instances: /readyz on their port; PostgreSQL: pg_isready over TCP (its first-start
    server on the Unix socket must not count)."""
    doc = compose()
    for svc in instances(doc).values():
        probe = " ".join(svc["healthcheck"]["test"])
        assert f"http://127.0.0.1:{settings_of(svc).port}/readyz" in probe
    test = services(doc)["postgres"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"]
    assert "-h" in test


def test_nginx_balances_every_instance() -> None:
    """UPSTREAMS lists each instance at its port, and nginx starts once each is healthy."""
    doc = compose()
    nginx = services(doc)["nginx"]
    expected = {f"{name}:{settings_of(svc).port}" for name, svc in instances(doc).items()}
    assert set(nginx["environment"]["UPSTREAMS"].split()) == expected
    assert nginx["depends_on"] == {
        name: {"condition": "service_healthy", "restart": True} for name in instances(doc)
    }
    assert nginx["volumes"] == ["./nginx.conf:/etc/nginx/pixel-nginx.conf:ro"]
