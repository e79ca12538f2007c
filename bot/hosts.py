"""Whether a host name is this machine: used wherever tipjar must stay on loopback.

The sandbox and `tipjar demo` refuse to listen anywhere else, the X adapter skips proxies
for a loopback API (the sandbox), and the web app lets a loopback site run without
SECRET_KEY.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for `localhost` and for loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
