"""Known networks (networks.py): the list format, every way a file can be wrong, how
PIXEL_NETWORKS lays lists over the shipped ones, IPv6, range boundaries, and a real server
classifying an address of an operator's list."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pixel_server import networks
from pixel_server.networks import NetworkList, Networks, NetworksFileError, load, parse
from pixel_server.traffic import classify

from conftest import API_TOKEN, ServerProcess, run_cli

HEAD = "# class: link_scanner\n# reason: office_gateway\n"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36"
)


def one(text: str) -> NetworkList:
    return parse(text, "test.txt")


def test_a_list_has_its_header_comments_and_networks_of_both_families() -> None:
    item = one(
        "# a comment first\n"
        "# class: preview_bot\n"
        "#reason:  chat_unfurler \n"
        "# kinds: click, event\n"
        "\n"
        "192.0.2.0/24   # a comment after a network\n"
        "  198.51.100.7\n"
        "2001:db8::/32\n"
        "# class words in a comment after the networks are not a header: class\n"
    )
    assert (item.cls, item.reason, item.kinds) == (
        "preview_bot",
        "chat_unfurler",
        frozenset({"click", "event"}),
    )
    assert item.label == "ip:chat_unfurler"
    first, last = int(ipaddress.ip_address("192.0.2.0")), int(ipaddress.ip_address("192.0.2.255"))
    single = int(ipaddress.ip_address("198.51.100.7"))
    assert item.ranges[4] == [(first, last), (single, single)]
    assert len(item.ranges[6]) == 1
    assert item.applies("click")
    assert not item.applies("open")
    assert one(HEAD + "192.0.2.0/24\n").kinds is None  # no kinds: every kind


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("# reason: x\n192.0.2.0/24\n", None, "no '# class:' header"),
        ("# class: link_scanner\n192.0.2.0/24\n", None, "no '# reason:' header"),
        ("# class: robot\n# reason: x\n", 1, "class 'robot' is not one of human"),
        ("# class: crawler\n# reason: Big Bot\n", 2, "reason 'Big Bot' is not"),
        (HEAD + "# kinds: open,pageview\n", 3, "kinds pageview not among view, open"),
        (HEAD + "# kinds: ,\n", 3, "kinds nothing not among"),
        (HEAD + "# class: crawler\n", 3, "a second 'class:' header"),
        (HEAD + "192.0.2.0/24\n# kinds: click\n", 4, "the 'kinds:' header comes after a network"),
        (
            HEAD + "\n192.0.2.1/24\n",
            4,
            "'192.0.2.1/24' is not a CIDR network (192.0.2.1/24 has host",
        ),
        (HEAD + "192.0.2.0/33\n", 3, "'192.0.2.0/33' is not a CIDR network"),
        (HEAD + "40.92.0.0/15,40.107.0.0/16\n", 3, "is not a CIDR network"),
        (HEAD + "2a01:111:f400::/129\n", 3, "is not a CIDR network"),
    ],
)
def test_a_bad_list_names_its_file_and_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(NetworksFileError) as caught:
        one(text)
    where = "test.txt" if line is None else f"test.txt:{line}"
    assert str(caught.value).startswith(f"{where}: "), caught.value
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unreadable_file_is_one_error(tmp_path: Path) -> None:
    binary = tmp_path / "bad.txt"
    binary.write_bytes(HEAD.encode() + b"\xff\xfe\n")
    with pytest.raises(NetworksFileError, match=r"bad\.txt: not UTF-8 text"):
        load(str(binary))
    with pytest.raises(NetworksFileError, match="no such file or directory"):
        load(str(tmp_path / "missing"))


def test_the_shipped_lists_load_and_say_their_source() -> None:
    names = {item.name: item for item in networks.shipped_lists()}
    assert set(names) == {
        "microsoft-eop.txt",
        "microsoft-safelinks-observed.txt",
        "google-crawlers.txt",
    }
    for item in names.values():
        text = Path(item.path).read_text()
        assert "Source" in text, item.name
        assert "Snapshot: " in text, item.name
    assert names["google-crawlers.txt"].kinds == frozenset({"click"})
    assert names["microsoft-eop.txt"].ranges[6], "Microsoft's IPv6 EOP ranges"


def test_lookup_boundaries_and_families() -> None:
    nets = Networks([one(HEAD + "192.0.2.0/25\n2001:db8:1::/48\n")])
    assert nets.lookup("192.0.2.0", "open") is not None
    assert nets.lookup("192.0.2.127", "open") is not None
    assert nets.lookup("192.0.2.128", "open") is None
    assert nets.lookup("192.0.1.255", "open") is None
    assert nets.lookup("2001:db8:1::", "click") is not None
    assert nets.lookup("2001:DB8:1:FFFF:FFFF:FFFF:FFFF:FFFF", "click") is not None
    assert nets.lookup("2001:db8:2::", "click") is None
    assert nets.lookup("2001:db8:0:ffff:ffff:ffff:ffff:ffff", "click") is None
    assert nets.lookup("::ffff:192.0.2.9", "click") is not None  # IPv4-mapped
    for junk in ("", "192.0.2", "192.0.2.300", "192.0.2.1.5", "not an address", "::g", "fe80::1%1"):
        assert nets.lookup(junk, "open") is None, junk
    assert nets.lookup("0.0.0.0", "open") is None
    assert nets.lookup("255.255.255.255", "open") is None
    assert Networks([]).lookup("192.0.2.1", "open") is None
    assert Networks([]).lookup("2001:db8::1", "open") is None


def test_overlaps_first_list_wins_then_kinds_decide() -> None:
    clicks = parse("# class: crawler\n# reason: wide\n# kinds: click\n10.0.0.0/8\n", "a.txt")
    narrow = parse("# class: link_scanner\n# reason: narrow\n10.1.0.0/16\n10.1.0.0/24\n", "b.txt")
    nets = Networks([clicks, narrow])
    assert nets.lookup("10.1.0.5", "click") is clicks
    assert nets.lookup("10.1.0.5", "open") is narrow  # the first list does not apply to opens
    assert nets.lookup("10.2.0.5", "open") is None
    assert nets.lookup("10.2.0.5", "click") is clicks
    # touching ranges of one list are one segment
    assert len(Networks([one(HEAD + "10.0.0.0/25\n10.0.0.128/25\n")])) == 1


def test_an_operator_directory_replaces_and_adds(tmp_path: Path) -> None:
    # an empty list named like a shipped one switches it off
    (tmp_path / "microsoft-safelinks-observed.txt").write_text(HEAD)
    (tmp_path / "office.txt").write_text(HEAD + "198.51.100.0/24\n")
    (tmp_path / "notes.md").write_text("not a list: ignored\n")
    nets = load(str(tmp_path))
    names = [item.name for item in nets.lists]
    assert names[:2] == ["microsoft-safelinks-observed.txt", "office.txt"]  # operator's first
    assert sorted(names) == sorted(
        [
            "microsoft-safelinks-observed.txt",
            "office.txt",
            "microsoft-eop.txt",
            "google-crawlers.txt",
        ]
    )
    assert nets.lookup("40.94.29.84", "click") is None  # replaced by an empty list
    found = nets.lookup("198.51.100.9", "open")
    assert found is not None
    assert found.reason == "office_gateway"
    eop = nets.lookup("40.107.218.12", "click")
    assert eop is not None
    assert eop.reason == "exchange_online_protection"
    # one file names one list, over the shipped ones
    single = load(str(tmp_path / "office.txt"))
    assert len(single.lists) == 4


def test_an_operator_list_wins_over_a_shipped_one_where_they_overlap(tmp_path: Path) -> None:
    mine = tmp_path / "relay.txt"
    mine.write_text("# class: apple_mpp\n# reason: my_relay\n# kinds: open\n40.107.218.0/24\n")
    nets = load(str(mine))
    verdict = classify(method="GET", ua=CHROME, kind="open", ip="40.107.218.12", networks=nets)
    assert (verdict.cls, verdict.reasons) == ("apple_mpp", ("ip:my_relay",))
    click = classify(method="GET", ua=CHROME, kind="click", ip="40.107.218.12", networks=nets)
    assert click.reasons == ("ip:exchange_online_protection",)


def test_a_gmail_proxy_open_from_a_google_crawler_address_is_an_open() -> None:
    gmail = (
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    )
    assert classify(method="GET", ua=gmail, kind="open", ip="66.249.66.87").cls == "mail_proxy"
    click = classify(method="GET", ua=CHROME, kind="click", ip="66.249.66.87")
    assert (click.cls, click.reasons) == ("crawler", ("ip:google_crawler",))
    six = classify(method="GET", ua=CHROME, kind="click", ip="2001:4860:4801:10::1")
    assert six.cls == "crawler"


def test_a_large_list_loads_and_looks_up(tmp_path: Path) -> None:
    """A Private Relay sized list: 100,000 /28s (the real one has a few hundred thousand)."""
    base = int(ipaddress.ip_address("100.64.0.0"))
    lines = (str(ipaddress.ip_address(base + i * 32)) + "/28" for i in range(100_000))
    path = tmp_path / "apple-private-relay.txt"
    path.write_text(
        "# class: apple_mpp\n# reason: icloud_private_relay\n# kinds: open,view\n"
        + "\n".join(lines)
    )
    nets = load(str(path))
    assert nets.lookup(str(ipaddress.ip_address(base + 32 * 777 + 5)), "open") is not None
    assert nets.lookup(str(ipaddress.ip_address(base + 32 * 777 + 16)), "open") is None  # the gap
    assert nets.lookup(str(ipaddress.ip_address(base + 5)), "click") is None


def test_a_bad_setting_stops_serve_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "lists"
    path.mkdir()
    (path / "office.txt").write_text(HEAD + "198.51.100.0/24\n198.51.100.300\n")
    result = run_cli("serve", env={"PIXEL_NETWORKS": str(path)}, cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: PIXEL_NETWORKS: {path / 'office.txt'}:4: '198.51.100.300'")


@pytest.mark.server
@pytest.mark.both_stores
def test_a_server_classifies_an_address_of_an_operator_list(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "loopback.txt").write_text(
        "# class: link_scanner\n# reason: office_scanner\n# kinds: view,open\n127.0.0.0/8\n::1\n"
    )
    server = server_factory(env={"PIXEL_NETWORKS": str(lists)})
    response = httpx.get(f"{server.url}/p.gif?cid=office", headers={"user-agent": CHROME})
    assert response.status_code == 200
    auth = {"authorization": f"Bearer {API_TOKEN}"}
    hits = httpx.get(f"{server.url}/api/hits", params={"cid": "office"}, headers=auth).json()
    [hit] = hits["hits"]
    assert (hit["traffic"], hit["traffic_reasons"]) == ("link_scanner", "ip:office_scanner")
    assert hit["ip"] == "127.0.0.0"  # anonymised after the class was decided
