"""Which process is which service, for the RSS columns of ``make load``.

A stack started by the load run knows its children (``Stack.procs``). A stack started by
``make run`` elsewhere is found by its listening ports: /proc/net/tcp gives the socket inode
listening on each port, /proc/<pid>/fd tells which process holds that socket (Linux only)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from deploy.local.stack import Stack, StackPorts

TCP_LISTEN = "0A"
ORDER = ("broker", "database", "ingest", "links", "review", "rooms")


def ordered(names: Iterable[str]) -> list[str]:
    """broker, database, the services, then every scanner (scanner, scanner-1, ...)."""
    names = list(names)
    head = [n for n in ORDER if n in names]
    scanners = sorted(
        (n for n in names if n.startswith("scanner")),
        key=lambda n: int(n.split("-")[1]) if "-" in n else 0,
    )
    rest = sorted(n for n in names if n not in head and n not in scanners)
    return head + scanners + rest


def stack_pids(stack: Stack) -> dict[str, int]:
    """The stack's running children (Prometheus left out: not a ChatPic service)."""
    alive = {k: p.pid for k, p in stack.procs.items() if p.poll() is None and k != "prometheus"}
    return {name: alive[name] for name in ordered(alive)}


def parse_listeners(text: str) -> dict[int, int]:
    """Listening port -> socket inode, from the text of /proc/net/tcp or /proc/net/tcp6."""
    out: dict[int, int] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != TCP_LISTEN:
            continue
        port = int(fields[1].rsplit(":", 1)[1], 16)
        out.setdefault(port, int(fields[9]))
    return out


def socket_owners(inodes: set[int], proc: Path = Path("/proc")) -> dict[int, int]:
    """Socket inode -> pid of a process holding it (processes we may not read are skipped)."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    found: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in wanted:
                found.setdefault(wanted[target], int(entry.name))
        if len(found) == len(wanted):
            break
    return found


def port_map(ports: StackPorts, scanners: int) -> dict[str, int]:
    """Process name -> the port it listens on (scanner N: its metrics port)."""
    named = {
        "broker": ports.broker,
        "database": ports.mongo,
        "ingest": ports.ingest,
        "links": ports.links,
        "review": ports.review,
        "rooms": ports.rooms,
    }
    for i in range(scanners):
        named[f"scanner-{i}" if i else "scanner"] = ports.scanner + i
    return named


def pids_by_port(named_ports: Mapping[str, int], proc: Path = Path("/proc")) -> dict[str, int]:
    """Process name -> pid of whatever listens on its port; names nobody listens on are left
    out."""
    listeners: dict[int, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            for port, inode in parse_listeners((proc / "net" / table).read_text()).items():
                listeners.setdefault(port, inode)
        except OSError:
            continue
    inodes = {listeners[p] for p in named_ports.values() if p in listeners}
    owners = socket_owners(inodes, proc)
    found = {
        name: owners[listeners[port]]
        for name, port in named_ports.items()
        if port in listeners and listeners[port] in owners
    }
    return {name: found[name] for name in ordered(found)}
