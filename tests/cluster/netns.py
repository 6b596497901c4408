"""Hosts as Linux network namespaces on one bridge: what the cluster rig stands on.

Every name the rig creates starts with ``PREFIX`` (namespaces ``albcl-<host>``, the root
namespace's link ``albcl0``), so a run can remove what an earlier, interrupted run left
behind without touching anything else on the machine. The bridge lives in a namespace of its
own (``albcl-switch``): the root namespace only gains one veth, the client's.

Needs root and iproute2 (``ip netns``); :func:`available` says whether this machine has them.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PREFIX = "albcl"
SWITCH = f"{PREFIX}-switch"
ROOT_LINK = f"{PREFIX}0"
#: Private, and inside the rig's namespaces only (plus the client's veth in the root namespace).
SUBNET = ipaddress.ip_network("10.231.0.0/24")
CLIENT_ADDRESS = "10.231.0.1"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def available() -> tuple[bool, str]:
    """(True, "") when namespaces can be made here, else (False, why not)."""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return False, "needs iproute2's ip"
    probe = f"{PREFIX}-probe-{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return False, f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return True, ""


def namespace(host: str) -> str:
    return f"{PREFIX}-{host}"


def _ours() -> list[str]:
    listing = _ip("netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listing if line.startswith(f"{PREFIX}-")]


def kill_namespace_processes(ns: str) -> int:
    """SIGKILL every process inside the namespace; returns how many there were."""
    pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def remove_all() -> list[str]:
    """Remove every namespace (and its processes) and link with the rig's prefix; returns the
    namespaces removed. Safe to call when nothing is there."""
    removed = _ours()
    for ns in removed:
        kill_namespace_processes(ns)
    deadline = time.monotonic() + 10
    while any(_ip("netns", "pids", ns, check=False).stdout.split() for ns in removed) and time.monotonic() < deadline:
        time.sleep(0.05)
    for ns in removed:
        _ip("netns", "del", ns, check=False)
    _ip("link", "del", ROOT_LINK, check=False)
    return removed


@dataclass
class Host:
    name: str
    address: str
    #: Processes started on this host: (name, process, open log file).
    processes: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)

    @property
    def ns(self) -> str:
        return namespace(self.name)

    @property
    def port_name(self) -> str:
        # The host's cable at the switch (interface names are at most 15 characters).
        return f"p-{self.name}"[:15]


class Network:
    """The hosts, the switch and the client's link; ``cut``/``restore`` pull and plug a host's cable."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = {name: Host(name, address) for name, address in hosts.items()}
        self._started: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def create(self) -> None:
        remove_all()  # leftovers of an interrupted run
        self._check_subnet_free()
        _ip("netns", "add", SWITCH)
        _ip("-n", SWITCH, "link", "add", "br0", "type", "bridge")
        _ip("-n", SWITCH, "link", "set", "br0", "up")
        for host in self.hosts.values():
            _ip("netns", "add", host.ns)
            _ip("-n", SWITCH, "link", "add", host.port_name, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
            _ip("-n", SWITCH, "link", "set", host.port_name, "master", "br0", "up")
            _ip("-n", host.ns, "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", "eth0")
            _ip("-n", host.ns, "link", "set", "eth0", "up")
            _ip("-n", host.ns, "link", "set", "lo", "up")
        # The client (the test process) stays in the root namespace, on one veth into the switch.
        _ip("link", "add", ROOT_LINK, "type", "veth", "peer", "name", "p-client", "netns", SWITCH)
        _ip("-n", SWITCH, "link", "set", "p-client", "master", "br0", "up")
        _ip("addr", "add", f"{CLIENT_ADDRESS}/{SUBNET.prefixlen}", "dev", ROOT_LINK)
        _ip("link", "set", ROOT_LINK, "up")

    @staticmethod
    def _check_subnet_free() -> None:
        # Someone else's interface on our subnet would make the rig's traffic go astray.
        for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
            parts = line.split()
            cidr = parts[parts.index("inet") + 1]
            if ipaddress.ip_interface(cidr).network.overlaps(SUBNET):
                raise RuntimeError(f"{SUBNET} is already in use on this machine ({parts[1]}): pick another SUBNET")

    def spawn(self, host: str, name: str, cmd: list[str], env: dict[str, str], log_dir: Path,
              user: str | None = None, cwd: Path | None = None, keep_stdout: bool = True) -> subprocess.Popen[bytes]:
        """Start ``cmd`` on ``host`` (inside its namespace) with exactly ``env``; output to
        ``log_dir/<host>-<name>.log`` (stderr only when not ``keep_stdout``)."""
        h = self.hosts[host]
        prefix = ["ip", "netns", "exec", h.ns]
        if user is not None:
            prefix += [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--"]
        log = open(log_dir / f"{host}-{name}.log", "ab")
        proc = subprocess.Popen(prefix + cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stderr=log,
                                stdout=log if keep_stdout else subprocess.DEVNULL, start_new_session=True)
        h.processes.append((name, proc, log))
        self._started.append((name, proc, log))
        return proc

    def process(self, host: str, name: str) -> subprocess.Popen[bytes]:
        return next(proc for n, proc, _ in self.hosts[host].processes if n == name)

    def kill(self, host: str, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.process(host, name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def cut(self, host: str) -> None:
        """Pull the host's cable at the switch: no FIN, no RST, its peers just stop hearing it."""
        _ip("-n", SWITCH, "link", "set", self.hosts[host].port_name, "down")

    def restore(self, host: str) -> None:
        _ip("-n", SWITCH, "link", "set", self.hosts[host].port_name, "up")

    def destroy(self) -> list[str]:
        """Stop every process (SIGKILL: nothing here needs a clean shutdown) and remove every
        namespace and link; returns what is left behind (empty when all went)."""
        # Last started first: the clients go before the services they would log errors about.
        for _, proc, log in reversed(self._started):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            log.close()
        remove_all()
        deadline = time.monotonic() + 10
        while (left := leftovers()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left


def leftovers() -> list[str]:
    """The rig's namespaces and links still present."""
    left = _ours()
    if _ip("link", "show", ROOT_LINK, check=False).returncode == 0:
        left.append(ROOT_LINK)
    return left
