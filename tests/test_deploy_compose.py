"""deploy/compose.postgres.yaml (and compose.sqlite.yaml) are consistent, and their topology
works: nginx started by the compose file's own command in front of two real instances on one
PostgreSQL schema.

No container runtime runs the compose files here (no Docker engine, and no image registry for
the postgres and nginx images). The files are read as Compose reads them (tests/composefile.py)
and checked: every reference resolves, every PIXEL_* name is a setting, and each instance's
environment, image ENV + env_file + environment, is accepted by the server. The LB test then
runs the pieces for real: nginx via the nginx service's shell command, with deploy/nginx.conf
and UPSTREAMS pointed at two local `pixel-server serve` processes that share the database and
the key, each with its own PIXEL_DATA_DIR.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import nginxtest
import pytest
from composefile import DEPLOY, MissingVariable, container_env, load, seconds
from nginxtest import client_from, get_from

from pixel_server.config import Settings

from conftest import API_TOKEN, ServerProcess, free_port, wait_until

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


# ---------------------------------------------------------------------------------------------
# The topology, for real: the nginx service's command in front of two instances on PostgreSQL.
# ---------------------------------------------------------------------------------------------

CLIENT = "127.0.5.3"  # stored truncated as 127.0.5.0; nginx's own 127.0.0.1 as 127.0.0.0
FORGER = "127.0.6.4"
TARGET = "https://shop.example/sale"
AUTH = {"authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def backend() -> str:
    """Every server_factory server here runs on PostgreSQL."""
    return "postgresql"


@pytest.fixture
def lb(tmp_path: Path) -> Iterator[Callable[[list[ServerProcess]], int]]:
    """Start nginx as the compose file's nginx service does, with its UPSTREAMS pointed at
    local servers (in order) and its published port at a free one; return that port."""
    binary = nginxtest.require()
    procs: list[subprocess.Popen[bytes]] = []

    def start(servers: list[ServerProcess]) -> int:
        nginx = load(POSTGRES_FILE, SECRETS)["services"]["nginx"]
        names = nginx["environment"]["UPSTREAMS"].split()
        assert len(names) == len(servers)
        port = free_port()
        prefix = tmp_path / "nginx-lb"
        prefix.mkdir()
        mount = "/etc/nginx/pixel-nginx.conf"
        assert nginx["volumes"] == [f"./nginx.conf:{mount}:ro"]
        (prefix / "pixel-nginx.conf").write_text(
            nginxtest.listening_on(port, nginxtest.CONF.read_text())
        )
        shell, flag, script = nginx["command"]
        local = {
            "/etc/nginx/": f"{prefix}/",
            "exec nginx ": f"exec {binary} -p {prefix}/ -c {prefix}/nginx.conf ",
        }
        for container_text, here in local.items():
            assert container_text in script
            script = script.replace(container_text, here)
        upstreams = " ".join(f"127.0.0.1:{server.port}" for server in servers)
        argv = [shell, flag, script]
        env = {"PATH": os.environ["PATH"], "UPSTREAMS": upstreams}
        procs.append(nginxtest.start(argv, port, prefix / "error.log", env))
        rendered = (prefix / "nginx.conf").read_text()
        for server in servers:
            assert f"server 127.0.0.1:{server.port};" in rendered
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def instance(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, name: str
) -> ServerProcess:
    """One instance as compose.postgres.yaml makes it: the shared database (the test's schema)
    and key (conftest's), its own PIXEL_DATA_DIR, and nginx's address (here 127.0.0.1, there
    the edge subnet) as the only trusted proxy."""
    return server_factory(
        env={"PIXEL_DATA_DIR": str(tmp_path / name), "PIXEL_TRUSTED_PROXIES": "127.0.0.1"}
    )


def received(server: ServerProcess) -> float:
    """pixel_hits_received_total of the one worker of ``server``, every kind together."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    counts = re.findall(r"^pixel_hits_received_total\{[^}]*\} (\S+)$", text, re.M)
    return sum(float(count) for count in counts)


def stored_ips(server: ServerProcess, cid: str) -> list[str]:
    response = httpx.get(f"{server.url}/api/hits", params={"cid": cid}, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return [hit["ip"] for hit in response.json()["hits"]]


@pytest.mark.server
def test_two_instances_behind_nginx_store_the_client_and_share_the_key(
    server_factory: Callable[..., ServerProcess],
    lb: Callable[[list[ServerProcess]], int],
    tmp_path: Path,
) -> None:
    """Through nginx both instances answer, every hit lands in the one database with the
    client's (truncated) address, never nginx's and never one the client claims, and a link
    signed by one instance redirects on the other and through nginx."""
    one, two = (
        instance(server_factory, tmp_path, "pixel1"),
        instance(server_factory, tmp_path, "pixel2"),
    )
    port = lb([one, two])
    with client_from(CLIENT, port) as client:
        for i in range(20):
            assert client.get(f"/p.gif?cid=lb&eid=lb-{i}").status_code == 200
    forged = {
        "x-forwarded-for": "198.51.100.66",
        "x-real-ip": "198.51.100.67",
        "forwarded": "for=198.51.100.68",
    }
    assert get_from(FORGER, port, "/p.gif?cid=forged", forged).status_code == 200
    # past nginx (which the compose networks rule out): an instance trusts no one else's header
    direct = get_from(FORGER, one.port, "/p.gif?cid=direct", {"x-forwarded-for": "198.51.100.69"})
    assert direct.status_code == 200

    counts = [received(one), received(two)]
    assert min(counts) > 0, f"nginx sent everything to one instance: {counts}"
    assert sum(counts) == 20 + 1 + 1
    # either instance reads every hit: one database
    assert stored_ips(two, "lb") == ["127.0.5.0"] * 20
    assert stored_ips(one, "forged") == ["127.0.6.0"]
    assert stored_ips(two, "direct") == ["127.0.6.0"]

    signed = httpx.post(
        f"{one.url}/api/links", json=[{"url": TARGET, "cid": "lb-link"}], headers=AUTH
    )
    assert signed.status_code == 200, signed.text
    path = urlsplit(signed.json()["links"][0]["link"]).path
    assert get_from(CLIENT, two.port, path).headers["location"] == TARGET
    with client_from(CLIENT, port) as client:
        for _ in range(2):  # round robin: one of the two is the other instance
            response = client.get(path)
            assert (response.status_code, response.headers["location"]) == (302, TARGET)
    assert stored_ips(one, "lb-link") == ["127.0.5.0"] * 3

    # what the shared key is for: an instance with a key of its own refuses the link
    own_key = server_factory(
        env={"PIXEL_DATA_DIR": str(tmp_path / "pixel3"), "PIXEL_SECRET_KEY": ""}
    )
    assert (tmp_path / "pixel3" / "pixel.key").exists()
    assert httpx.get(f"{own_key.url}{path}").status_code == 400


@pytest.mark.server
@pytest.mark.timeout(180)
def test_an_instance_stopped_behind_nginx_costs_no_request(
    server_factory: Callable[..., ServerProcess],
    lb: Callable[[list[ServerProcess]], int],
    tmp_path: Path,
) -> None:
    """A rolling restart: SIGTERM one instance while a client sends pixels through nginx.
    nginx moves to the other instance (a refused or closed upstream connection is retried
    there for these GETs); every pixel is answered 200 and stored exactly once."""
    one, two = (
        instance(server_factory, tmp_path, "pixel1"),
        instance(server_factory, tmp_path, "pixel2"),
    )
    port = lb([one, two])
    answers: list[tuple[str, int]] = []
    stop = threading.Event()
    progress = threading.Condition()

    def client() -> None:
        # from 20 addresses in turn: nginx.conf limits each address to 50 pixels a second
        with contextlib.ExitStack() as stack:
            sources = [f"127.0.8.{n}" for n in range(1, 21)]
            https = [stack.enter_context(client_from(source, port)) for source in sources]
            i = 0
            while not stop.is_set() and i < 5000:
                eid = f"roll-{i}"
                status = https[i % len(https)].get(f"/p.gif?cid=roll&eid={eid}").status_code
                with progress:
                    answers.append((eid, status))
                    progress.notify_all()
                i += 1

    def answered(count: int) -> None:
        with progress:
            assert progress.wait_for(lambda: len(answers) >= count, 60), len(answers)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        answered(50)
        assert one.stop(signal.SIGTERM) == 0
        after = len(answers)
        answered(after + 50)
    finally:
        stop.set()
        thread.join(60)
    assert [a for a in answers if a[1] != 200] == []
    wait_until(lambda: two.rows("SELECT count(*) FROM hits")[0][0] >= len(answers), "all stored")
    rows = two.rows("SELECT eid, count(*) FROM hits GROUP BY eid")
    assert dict(rows) == {eid: 1 for eid, _ in answers}
