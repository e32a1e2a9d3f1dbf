"""The bearer key: read from the environment variable `--api-key-env` names, required off loopback.

The key itself is never logged, printed or written: errors name the variable, not its value.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from harness.errors import ConfigError

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def read_api_key(env_name: str | None, host: str) -> str:
    """The key from $env_name ("" without --api-key-env); a non-loopback host without one is refused."""
    if env_name is None:
        if not is_loopback(host):
            raise ConfigError(
                f"--host {host!r} is not a loopback address: serving beyond this machine needs a key; "
                "pass --api-key-env NAME (a bearer key in the environment variable NAME), or --host 127.0.0.1"
            )
        return ""
    key = os.environ.get(env_name, "")
    if not key.strip():
        state = "is empty" if env_name in os.environ else "is not set"
        raise ConfigError(f"--api-key-env {env_name}: the environment variable {env_name} {state}; set it to the key")
    return key


def authorized(header: str | None, key: str) -> bool:
    """Whether an Authorization header carries `Bearer <key>` (compared in constant time)."""
    if not key:
        return True
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())
