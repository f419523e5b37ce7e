"""systemd notifications (Type=notify readiness and watchdog) without the libsystemd binding.

Every call is a no-op unless systemd set NOTIFY_SOCKET, so the daemon behaves the same by hand.
"""

from __future__ import annotations

import os
import socket


def _send(state: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace socket
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError:
        return False


def ready(status: str = "listening") -> bool:
    """Tell systemd start-up is complete (Type=notify)."""
    return _send(f"READY=1\nSTATUS={status}")


def watchdog() -> bool:
    """Pet the watchdog; call only while audio keeps flowing so a stuck capture gets restarted."""
    return _send("WATCHDOG=1")


def status(text: str) -> bool:
    """Set the one-line status `systemctl status` shows."""
    return _send(f"STATUS={text}")


def stopping() -> bool:
    """Tell systemd a clean shutdown has begun."""
    return _send("STOPPING=1")
