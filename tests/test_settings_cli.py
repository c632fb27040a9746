"""Every bad setting, as a variable or a flag, of every command: one line, exit 2, no traceback."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pixel_server import server
from pixel_server.cli import main
from pixel_server.config import Settings

from conftest import SECRET, run_cli

FIELDS = {f.name: f for f in dataclasses.fields(Settings)}

# At least one bad value for every setting; "{dir}" is an existing directory, "{file}" an
# existing regular file. A new setting without a row here fails
# test_every_setting_has_bad_values, so its validation gets written and tested with it.
BAD: dict[str, tuple[str, ...]] = {
    "host": ("not a host!", "http://0.0.0.0", "-x-.example.", "a..b"),
    "port": ("0", "65536", "eighty", "99999999999999999999", "80.5", "٨٠"),
    "workers": ("0", "257", "-1"),
    "server": ("gunicorn", "uvicorn,granian"),
    "db": ("{dir}", "data/", ".", "postgresql://u@h/db"),
    "database_url": (
        "mysql://u:hunter2-secret@h/db",
        "postgresql://u:hunter2-secret@h/",
        "postgresql://u:hunter2-secret@h:port/db",
        "sqlite:///data/",
        "pixel.db",
    ),
    "data_dir": ("{file}",),
    "public_url": ("ftp://t.example", "t.example", "https://t.example/?q=1", "https://", "x y"),
    "secret_key": ("Xq7-tiny",),
    "secret_file": ("{dir}", "keys/"),
    "key_id": ("bad id!", "k" * 17, "k1.2"),
    "verify_keys": (
        "no-colon",
        "k0:Xq7-tiny",
        "k0:0123456789abcdef,k0:fedcba9876543210",
        "bad id:0123456789abcdef",
        ":0123456789abcdef",
    ),
    "api_tokens": ("Xq7tiny", "has a space-0123456789", "tökenwithumlaut1", "long-enough,Xq7"),
    "ip_mode": ("partial", "truncated", "hashed"),
    "honour_signals": ("sec-gpc", "gpc,none", "gpc;dnt", ","),
    "consent": ("yes", "granted"),
    "identifier_params": ("e mail", "uid,a/b", "x" * 129),
    "trusted_proxies": ("notanip", "10.0.0.0/33", "10.0.0.1,bogus", "10.0.0.1:80"),
    "redirect_hosts": (
        "http://bad",
        "shop.example/path",
        "shop.example:443",
        "*.shop.example",
        ".shop.example",
        "shop.example.",
        "a b.example",
        "user@shop.example",
        "[not-ipv6]",
    ),
    "redirect_allow_ip": ("maybe", "2"),
    "hsts_seconds": ("-1", "63072001", "1y"),
    "auth_failures": ("0", "ten", "100001"),
    "visitor_hash": ("maybe", "2"),
    "redact_emails": ("maybe", "2"),
    "retain_days": ("-1", "36501", "1y"),
    "retain_raw_days": ("-1", "thirty"),
    "retain_raw_fields": ("ts", "ua,cid", "browser"),
    "queue_max": ("0", "10000001", "many"),
    "batch_max": ("0", "100001"),
    "ack_timeout": ("0", "-1", "nan", "inf", "3601"),
    "drain_timeout": ("0", "nan", "1e400"),
    "graceful_timeout": ("0", "1.5", "3601"),
    "spill_dir": ("{file}",),
    "spill_max_bytes": ("0", str((1 << 40) + 1)),
    "busy_timeout": ("0", "2", "5"),  # must stay below PIXEL_ACK_TIMEOUT (2.0)
    "sqlite_synchronous": ("OFF", "EXTRA"),
    "pg_pool_max": ("1", "101"),
    "max_query_bytes": ("0", str((1 << 20) + 1)),
    "max_params": ("0", "10001"),
    "max_value_chars": ("0", str((1 << 20) + 1)),
    "max_token_bytes": ("63", str((1 << 16) + 1)),
    "log_level": ("bogus", "trace", "5"),
    "access_log": ("maybe", "enabled"),
    "max_connections": ("0", "1000001", "lots"),
    "max_header_bytes": ("1023", str((1 << 24) + 1), "64k"),
    "header_timeout": ("0", "3601", "nan"),
    "keepalive_timeout": ("0", "-1", "inf"),
    "metrics_token": ("q9z", "two-tokens,here-2nd", "has space inside"),
    "burst_links": ("1", "1001", "two"),
    "burst_seconds": ("0", "3601", "nan"),
    "burst_delivery_seconds": ("-1", "86401", "inf"),
    "burst_every": ("-0.5", "3601", "often"),
    "events_max_bytes": ("1023", str((1 << 28) + 1), "1MB"),
    "events_max_batch": ("0", "100001", "many"),
    "events_max_age": ("-1", str(30 * 86_400 + 1), "72h"),
    "event_schemas": ("{dir}", "{file}", "/nonexistent/schemas.json"),
    "networks": ("{file}", "/nonexistent/networks"),
    "audit_config": ("{dir}", "{file}", "/nonexistent/audit.json"),
    "report_zone": ("Mars/Olympus", "../../etc/passwd", "UTC+1"),
    "exclude_networks": ("203.0.113.0/33", "not-a-network", "300.1.1.1"),
    "revocations_ttl": ("0.01", "3601", "soon"),
    "cors_origins": (
        "https://shop.example/",
        "shop.example",
        "*,https://shop.example",
        "https://Shop.example",
        "https://user@shop.example",
        "ftp://shop.example",
        "https://shop.example:99999",
        ",",
    ),
}
# What each command needs besides settings. A new command must be added here (or to
# SETTINGS_FREE, if it reads no settings at all): test_every_command_is_walked.
COMMAND_ARGS: dict[str, tuple[str, ...]] = {
    "serve": (),
    "link": ("https://shop.example/",),
    "pixel": (),
    "hits": (),
    "export": (),
    "migrate": (),
    "copy": ("source.db", "dest.db"),
    # the `keys` group (being added at the same time): each reads the settings first
    "keys init": (),
    "keys show": (),
    "keys rotate": (),
    "keys create": ("--name", "checkout", "--scope", "ingest"),
    "keys list": (),
    "keys revoke": ("abcdefghijkl",),
    "loss": (),
    "wrap": ("spring.html",),
    "reclassify": (),
    "campaign": ("spring",),
    "revoke": ("--list",),
    "stats": (),
    "rollups rebuild": (),
    "audit": (),
    "purge": (),
    "admin-log": (),
    "erase": ("--uid", "r-1042"),
    "subject-export": ("--uid", "r-1042"),
}
SETTINGS_FREE: set[str] = set()


def leaf_commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


COMMANDS = dict(leaf_commands(main))
WALKED = [name for name in COMMANDS if name not in SETTINGS_FREE]


def flag_of(command: str, field: str) -> str | None:
    """The value flag of ``command`` that sets ``field`` (boolean on/off flags have no value)."""
    for param in COMMANDS[command].params:
        is_flag = isinstance(param, click.Option) and param.is_flag
        if param.envvar == FIELDS[field].metadata["env"] and not is_flag:
            return param.opts[0]
    return None


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no PIXEL_* from outside, a valid key and database path."""
    for name in list(os.environ):
        if name.startswith("PIXEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIXEL_DB", str(tmp_path / "pixel.db"))
    monkeypatch.setenv("PIXEL_SECRET_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "a-file").write_text("not a directory\n")

    def no_server(*_args: object) -> int:
        raise AssertionError("serve got past its checks with a bad setting")

    monkeypatch.setattr(server, "run", no_server)
    return tmp_path


def concrete(value: str, workdir: Path) -> str:
    return value.format(dir=workdir / "a-directory", file=workdir / "a-file")


def assert_one_line_error(
    code: int, stderr: str, stdout: str, *names: str, secret: str | None = None
) -> None:
    assert code == 2, (code, stderr, stdout)
    assert "Traceback" not in stderr + stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    for name in names:
        assert name in lines[0], (name, stderr)
    if secret is not None:
        for entry in secret.split(","):
            part = entry.partition(":")[2] or entry  # an id:secret pair shows its id only
            assert part not in stderr, f"a secret was echoed: {part!r}"


def test_every_setting_has_bad_values() -> None:
    """The table of bad values covers every field of Settings, and nothing else."""
    assert set(BAD) == set(FIELDS), "add the new setting's bad values to BAD"
    assert all(BAD.values())


def test_every_command_is_walked() -> None:
    """Every command of pixel-server is in the walk (or declared free of settings)."""
    assert set(COMMANDS) - SETTINGS_FREE <= set(COMMAND_ARGS), "add it to COMMAND_ARGS"


@pytest.mark.parametrize("command", WALKED)
@pytest.mark.parametrize("field", list(FIELDS))
def test_bad_variable_is_one_line_naming_it(workdir: Path, field: str, command: str) -> None:
    """Each bad value of each PIXEL_* variable stops each command: one line, exit 2."""
    f = FIELDS[field]
    env = f.metadata["env"]
    runner = CliRunner()
    for value in BAD[field]:
        raw = concrete(value, workdir)
        result = runner.invoke(main, [*command.split(), *COMMAND_ARGS[command]], env={env: raw})
        secret = raw if not f.repr else None
        assert_one_line_error(result.exit_code, result.stderr, result.stdout, env, secret=secret)


@pytest.mark.parametrize(
    ("command", "field"),
    [(c, f) for c in WALKED for f in FIELDS if flag_of(c, f)],
)
def test_bad_flag_is_one_line_naming_flag_and_variable(
    workdir: Path, field: str, command: str
) -> None:
    """Each bad value given as a flag names the flag and its variable: one line, exit 2."""
    flag = flag_of(command, field)
    assert flag is not None
    runner = CliRunner()
    for value in BAD[field]:
        args = [*command.split(), *COMMAND_ARGS[command], flag, concrete(value, workdir)]
        result = runner.invoke(main, args)
        env = FIELDS[field].metadata["env"]
        assert_one_line_error(result.exit_code, result.stderr, result.stdout, flag, env)


@pytest.mark.parametrize("field", list(FIELDS))
def test_real_serve_refuses_each_bad_setting_in_one_line(workdir: Path, field: str) -> None:
    """A real `pixel-server serve` (2 workers) refuses the variable and the flag: one line."""
    f = FIELDS[field]
    env = f.metadata["env"]
    value = concrete(BAD[field][0], workdir)
    result = run_cli("serve", env={env: value}, cwd=workdir)
    secret = value if not f.repr else None
    assert_one_line_error(result.returncode, result.stderr, result.stdout, env, secret=secret)
    flag = flag_of("serve", field)
    if flag is not None:
        result = run_cli("serve", flag, value, env={}, cwd=workdir)
        assert_one_line_error(result.returncode, result.stderr, result.stdout, flag, env)
    assert not (workdir / "pixel.db").exists()


@pytest.mark.parametrize("command", ["serve", "link"])
def test_allowlist_entry_the_url_rules_refuse_is_one_line(workdir: Path, command: str) -> None:
    """An entry of valid syntax that urls.py refuses (bad punycode) is one line, exit 2."""
    args = [command, *COMMAND_ARGS[command], "--redirect-hosts", "shop.example,xn--zz.example"]
    result = run_cli(*args, env={}, cwd=workdir)
    assert_one_line_error(result.returncode, result.stderr, result.stdout, "PIXEL_REDIRECT_HOSTS")


def test_usage_errors_of_options_are_one_line_too(workdir: Path) -> None:
    """A bad value of an ordinary option is one line with a --help hint, exit 2."""
    result = CliRunner().invoke(main, ["hits", "--limit", "0"])
    assert_one_line_error(result.exit_code, result.stderr, result.stdout, "--limit", "--help")


def as_other_user() -> list[str]:
    """A command prefix that runs without permission to write where root could.

    As root, permission bits do not apply: the prefix drops to `nobody` with setpriv (a CI
    runner is not root, and there the plain user is what the test needs)."""
    if os.geteuid() != 0:
        return []
    setpriv = Path("/usr/bin/setpriv")
    if not setpriv.exists():
        pytest.skip("running as root without setpriv: no user that file modes would stop")
    return [str(setpriv), "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory for paths the test's user (or nobody) can reach; outside pytest's 0700
    base directory when running as root, so that nobody can reach it."""
    base = Path(tmp_path_factory.getbasetemp())
    root = Path("/tmp") if os.geteuid() == 0 else base
    path = Path(os.path.realpath(root)) / f"pixel-ro-{os.getpid()}-{base.name}"
    path.mkdir(mode=0o755)
    yield path
    for directory, _dirs, _files in os.walk(path):
        os.chmod(directory, 0o700)  # rmtree needs to write each directory
    shutil.rmtree(path)


# (what is not writable, the variable the message must name, extra settings)
UNWRITABLE = {
    # the Docker case: PIXEL_DB=/data/pixel.db on a bind mount the user cannot write
    "data directory": ("data", "PIXEL_DB", {"PIXEL_DB": "data/pixel.db"}),
    "database file": ("ok/pixel.db", "PIXEL_DB", {"PIXEL_DB": "ok/pixel.db"}),
    "spill directory": ("spill", "PIXEL_SPILL_DIR", {"PIXEL_SPILL_DIR": "spill"}),
    "key directory": ("keys", "PIXEL_SECRET_FILE", {"PIXEL_SECRET_FILE": "keys/pixel.key"}),
}


@pytest.mark.parametrize("case", list(UNWRITABLE))
def test_unwritable_path_is_one_line_naming_path_and_user(data_dir: Path, case: str) -> None:
    """serve where it cannot write: one line naming the variable, path and user, exit 2."""
    blocked, variable, settings = UNWRITABLE[case]
    for name in ("data", "ok", "spill", "keys"):
        (data_dir / name).mkdir(mode=0o777)
        (data_dir / name).chmod(0o777)  # whatever the umask: writable by nobody too
    env = {"PIXEL_DB": str(data_dir / "ok/pixel.db"), "PIXEL_SECRET_KEY": ""}
    env |= {name: str(data_dir / value) for name, value in settings.items()}
    target = data_dir / blocked
    if target.suffix == ".db":
        target.write_bytes(b"")
    target.chmod(0o444 if target.suffix == ".db" else 0o555)
    prefix = as_other_user()
    result = run_cli("serve", env=env, cwd=Path("/"), prefix=tuple(prefix))
    user = "user nobody" if prefix else f"uid {os.getuid()}"
    assert_one_line_error(
        result.returncode, result.stderr, result.stdout, variable, str(target), user
    )
    assert not (data_dir / "ok/pixel.db").exists() or case == "database file"


@pytest.mark.parametrize("command", ["serve", "hits", "export"])
def test_database_path_at_another_file_is_one_line(workdir: Path, command: str) -> None:
    """PIXEL_DB pointing at a file that is not SQLite: one line, exit 2, file untouched."""
    other = workdir / "notes.txt"
    other.write_text("not a database\n")
    result = run_cli(command, env={"PIXEL_DB": str(other)}, cwd=workdir)
    assert_one_line_error(result.returncode, result.stderr, result.stdout, "PIXEL_DB", str(other))
    assert other.read_text() == "not a database\n"


def test_path_error_from_any_command_is_one_line(workdir: Path) -> None:
    """An OSError about a configured path (a key file under a regular file) is one line."""
    key = workdir / "a-file" / "pixel.key"
    result = CliRunner().invoke(
        main, ["pixel"], env={"PIXEL_SECRET_KEY": "", "PIXEL_SECRET_FILE": str(key)}
    )
    assert_one_line_error(result.exit_code, result.stderr, result.stdout, str(workdir / "a-file"))
