"""Known networks: lists of address ranges whose requests are machines of a known kind, as
text files the operator can update (docs/traffic.md, "Known networks").

A list file says what its addresses are, then lists them, one CIDR (or one address) a line::

    # class: link_scanner
    # reason: exchange_online_protection
    # kinds: open,view,click           (optional: the hit kinds it applies to; default all)
    # any other comment
    40.92.0.0/15                       # a comment after a network too
    2a01:111:f400::/48

The package ships small snapshots (``pixel_server/data/networks/*.txt``, each citing its
source and date); ``PIXEL_NETWORKS`` names a file or a directory of ``*.txt`` laid over them:
a file named like a shipped one replaces it (an empty list switches it off), others are
added, and an operator's list wins where it overlaps a shipped one. Nothing is downloaded.

A lookup runs for every hit, before the address is anonymised, so it is cheap: an IPv4
address whose first two octets no list covers is answered from a set of strings without
being parsed; otherwise the address becomes an integer and a bisection over the sorted,
non-overlapping ranges of its family finds the lists that hold it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .fields import KINDS

SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "networks"
SUFFIX = ".txt"
HEADER = re.compile(r"#\s*(class|reason|kinds)\s*:(.*)", re.IGNORECASE)
REASON = re.compile(r"[a-z0-9_]{1,40}")
_MAPPED = 0xFFFF  # ::ffff:a.b.c.d, an IPv4 address in an IPv6 socket's notation


class NetworksFileError(ValueError):
    """A list cannot be used: one line, ``file:line: problem``."""


@dataclass(frozen=True, slots=True)
class NetworkList:
    """One list file: what its addresses are and the ranges, ``(first, last)`` as integers
    per family (4, 6)."""

    name: str  # the file's name: an operator's file of this name replaces a shipped one
    path: str
    cls: str
    reason: str
    kinds: frozenset[str] | None  # None: every kind of hit
    ranges: dict[int, list[tuple[int, int]]]

    @property
    def label(self) -> str:
        """The reason a verdict names (``ip:<reason>``)."""
        return f"ip:{self.reason}"

    def applies(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


def parse(text: str, path: str) -> NetworkList:
    """The list in ``text`` (the file at ``path``, named in errors)."""
    from .traffic import CLASSES  # traffic imports this module

    header: dict[str, str] = {}
    ranges: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    seen_network = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{path}:{number}"
        if line.startswith("#"):
            match = HEADER.fullmatch(line)
            if match is None:
                continue  # a comment
            key, value = match[1].lower(), match[2].strip()
            if seen_network:
                raise NetworksFileError(f"{where}: the '{key}:' header comes after a network")
            if key in header:
                raise NetworksFileError(f"{where}: a second '{key}:' header")
            header[key] = value
            _check_header(key, value, where, CLASSES)
            continue
        line = line.partition("#")[0].strip()
        if not line:
            continue
        family, first, last = _network(line, where)
        seen_network = True
        ranges[family].append((first, last))
    for key in ("class", "reason"):
        if key not in header:
            raise NetworksFileError(f"{path}: no '# {key}:' header before the networks")
    kinds = header.get("kinds")
    return NetworkList(
        name=Path(path).name,
        path=path,
        cls=header["class"],
        reason=header["reason"],
        kinds=None if kinds is None else frozenset(_kinds(kinds)),
        ranges=ranges,
    )


def _network(text: str, where: str) -> tuple[int, int, int]:
    """(family, first, last) of one CIDR network or address. The common, canonical forms
    are read with ``inet_pton`` (a tenth of ``ipaddress``'s time: a Private Relay list has
    hundreds of thousands); anything else, and every error, goes through ``ipaddress``."""
    address, _, length = text.partition("/")
    family, bits = (socket.AF_INET6, 128) if ":" in address else (socket.AF_INET, 32)
    if (length.isdigit() and length.isascii() and int(length) <= bits) or not length:
        try:
            value = int.from_bytes(socket.inet_pton(family, address), "big")
        except OSError:
            pass
        else:
            size = 1 << (bits - int(length or bits))
            if not value & (size - 1):
                return (6 if bits == 128 else 4), value, value + size - 1
    try:
        network = ipaddress.ip_network(text)
    except ValueError as exc:
        raise NetworksFileError(f"{where}: {text!r} is not a CIDR network ({exc})") from None
    first = int(network.network_address)
    return network.version, first, first + network.num_addresses - 1


def _kinds(value: str) -> list[str]:
    return [kind.strip() for kind in value.split(",") if kind.strip()]


def _check_header(key: str, value: str, where: str, classes: tuple[str, ...]) -> None:
    if key == "class" and value not in classes:
        raise NetworksFileError(f"{where}: class {value!r} is not one of {', '.join(classes)}")
    if key == "reason" and REASON.fullmatch(value) is None:
        raise NetworksFileError(
            f"{where}: reason {value!r} is not 1-40 lowercase letters, digits or _"
        )
    if key == "kinds":
        kinds = _kinds(value)
        wrong = [kind for kind in kinds if kind not in KINDS]
        if not kinds or wrong:
            shown = ", ".join(wrong) or "nothing"
            raise NetworksFileError(
                f"{where}: kinds {shown} not among {', '.join(KINDS)} (comma-separated)"
            )


def read(path: Path) -> NetworkList:
    """The list in the file at ``path``; NetworksFileError if it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NetworksFileError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise NetworksFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse(text, str(path))


def files(setting: str) -> list[Path]:
    """The list files of ``PIXEL_NETWORKS`` (a file, or a directory's ``*.txt``)."""
    path = Path(setting)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.name.endswith(SUFFIX) and p.is_file())
    if not path.exists():
        raise NetworksFileError(f"{path}: no such file or directory")
    return [path]


def load(setting: str = "") -> Networks:
    """The shipped lists with ``setting``'s (``PIXEL_NETWORKS``: empty, a file or a
    directory) laid over them; NetworksFileError names the file and line of a bad one."""
    own = [read(path) for path in files(setting)] if setting else []
    replaced = {item.name for item in own}
    kept = [item for item in shipped_lists() if item.name not in replaced]
    return Networks([*own, *kept])


@cache
def shipped_lists() -> tuple[NetworkList, ...]:
    return tuple(read(path) for path in sorted(SHIPPED_DIR.glob(f"*{SUFFIX}")))


@cache
def shipped() -> Networks:
    """The shipped lists alone (what :func:`traffic.classify` uses when told no others)."""
    return Networks(shipped_lists())


class Networks:
    """Lists, first wins where they overlap, looked up by address and kind of hit."""

    def __init__(self, lists: Iterable[NetworkList]) -> None:
        self.lists = tuple(lists)
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        self._holders: dict[int, list[tuple[NetworkList, ...]]] = {}
        for family in (4, 6):
            starts, ends, holders = _segments(self.lists, family)
            self._starts[family], self._ends[family] = starts, ends
            self._holders[family] = holders
        # the first two octets of every IPv4 address a list holds: most addresses stop here
        heads: set[str] = set()
        for start, end in zip(self._starts[4], self._ends[4], strict=True):
            heads.update(f"{h >> 8}.{h & 255}" for h in range(start >> 16, (end >> 16) + 1))
        self._v4_heads = frozenset(heads)
        self._any_v6 = bool(self._starts[6])

    def __len__(self) -> int:
        """How many ranges (after merging) the lists hold."""
        return len(self._starts[4]) + len(self._starts[6])

    def lookup(self, ip: str, kind: str) -> NetworkList | None:
        """The first list holding ``ip`` (a plain address as text) that applies to ``kind``;
        None for any other address, and for text that is not an address."""
        if ":" not in ip:
            if ip[: ip.find(".", ip.find(".") + 1)] not in self._v4_heads:
                return None
            try:
                value = int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
            except OSError:
                return None
            return self._find(4, value, kind)
        if not self._any_v6 and not self._v4_heads:
            return None
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, ip), "big")
        except OSError:
            return None
        if value >> 32 == _MAPPED:
            return self._find(4, value & 0xFFFFFFFF, kind)
        return self._find(6, value, kind)

    def _find(self, family: int, value: int, kind: str) -> NetworkList | None:
        index = bisect_right(self._starts[family], value) - 1
        if index < 0 or value > self._ends[family][index]:
            return None
        for item in self._holders[family][index]:
            if item.applies(kind):
                return item
        return None


def _segments(
    lists: tuple[NetworkList, ...], family: int
) -> tuple[list[int], list[int], list[tuple[NetworkList, ...]]]:
    """The ranges of ``lists`` in ``family`` as sorted, non-overlapping segments, each with
    the lists that hold it, in their order: a sweep over the sorted boundaries (n log n).
    Touching or overlapping ranges held by the same lists become one segment."""
    events: list[tuple[int, int, int]] = []  # (address, +1 opens at / -1 closes at, list)
    for order, item in enumerate(lists):
        for first, last in item.ranges[family]:
            events.append((first, 1, order))
            events.append((last + 1, -1, order))
    events.sort()
    starts: list[int] = []
    ends: list[int] = []
    holders: list[tuple[NetworkList, ...]] = []
    active = [0] * len(lists)
    interned: dict[tuple[int, ...], tuple[NetworkList, ...]] = {(): ()}
    current: tuple[int, ...] = ()
    opened = 0
    i, count = 0, len(events)
    while i < count:
        point = events[i][0]
        while i < count and events[i][0] == point:
            active[events[i][2]] += events[i][1]
            i += 1
        held = tuple(order for order, n in enumerate(active) if n)
        if held == current:
            continue
        if current:
            starts.append(opened)
            ends.append(point - 1)
            holders.append(interned[current])
        current, opened = held, point
        if held not in interned:
            interned[held] = tuple(lists[order] for order in held)
    return starts, ends, holders
