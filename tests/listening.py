"""The listening sockets of a tree of processes (a Ray cluster's), read with psutil."""

import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1)."""
    ip = ipaddress.ip_address(host.split("%")[0])
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def listening_sockets(root: psutil.Process | None = None) -> set[tuple[str, str, int]]:
    """(process title, host, port) of every listening TCP socket and unconnected UDP socket of ``root``
    (default: this process) and every process under it."""
    root = root or psutil.Process()
    found = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = " ".join(proc.cmdline()[:1])[-60:] or proc.name()
            for conn in proc.net_connections(kind="inet"):
                udp = conn.type == 2 and not conn.raddr  # SOCK_DGRAM
                if conn.status == psutil.CONN_LISTEN or udp:
                    found.add((name, conn.laddr.ip, conn.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # a process that ended while we looked
    return found


@contextmanager
def sampled_sockets(root: psutil.Process | None = None, every: float = 0.1) -> Iterator[set]:
    """Collect ``listening_sockets(root)`` every ``every`` seconds while the block runs."""
    seen: set[tuple[str, str, int]] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.update(listening_sockets(root))
            done.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()
        seen.update(listening_sockets(root))
