"""Trusted ``Host`` headers: the HTTP trigger's defence against DNS rebinding.

A web page on another site can make a browser send requests to ``127.0.0.1:3111`` by pointing a
name it controls at that address; the browser then sends that name as ``Host``. Refusing every
Host that is not trusted stops such requests before any route runs. Trusted by default, on any
port: the loopback names (``localhost``, any loopback IP such as ``127.0.0.1`` or ``[::1]``), the
address the server is bound to, and names without a dot (``my-service``: no one outside can
register one in public DNS, so no web page can rebind it). When the server is bound to every
interface (``0.0.0.0`` or ``::``) any IP address literal is trusted too: a rebinding attack
always carries a registered name, never an address. ``http.trusted_hosts`` in wistro.yml adds names (``api.example.com``,
``api.example.com:8443``, ``*.example.com`` for every subdomain) or ``"*"`` for every Host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["TrustedHosts", "check_host_pattern", "split_host"]

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
LOOPBACK_NAMES = frozenset({"localhost"})
_REMEMBERED = 256  # Host values whose verdict is kept (a server sees a handful)


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a Host header value, lower-case, brackets and a trailing dot removed;
    None when it is not a valid host."""
    value = value.strip().lower()
    port: str | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
        address = _ip(name)
        if address is None or address.version != 6:
            return None
        name = str(address)
    else:
        if value.count(":") > 1:
            return None  # a bare IPv6 address: not a valid Host
        name, sep, port_text = value.partition(":")
        port = port_text if sep else None
        name = name.removesuffix(".")
        if not name or (not _NAME.match(name) and _ip(name) is None):
            return None
    if port is not None:
        if not _PORT.match(port) or int(port) > 65535:
            return None
        return name, int(port)
    return name, None


def check_host_pattern(pattern: str) -> str | None:
    """What is wrong with a ``trusted_hosts`` entry, or None when it is fine."""
    if pattern == "*":
        return None
    text = pattern.removeprefix("*.")
    if text.startswith("*") or "*" in text:
        return f"{pattern!r}: '*' may only stand alone or start a name ('*.example.com')"
    if ":" in text and not text.startswith("[") and text.count(":") > 1:
        text = f"[{text}]"  # a bare IPv6 address is fine in the config
    if "/" in text or split_host(text) is None:
        return f"{pattern!r} is not a host name, host:port or IP address"
    if pattern.startswith("*.") and _ip(text.split(":")[0]) is not None:
        return f"{pattern!r}: '*.' applies to names, not to IP addresses"
    return None


@dataclass(frozen=True, slots=True)
class _Pattern:
    name: str
    port: int | None
    subdomains: bool  # ``*.example.com``

    def matches(self, name: str, port: int | None) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.subdomains:
            return name.endswith("." + self.name)
        return name == self.name


class TrustedHosts:
    """Decides whether a request's Host header is trusted (see the module docstring)."""

    def __init__(self, patterns: Iterable[str] = (), bound_host: str | None = None) -> None:
        self.allow_all = False
        self.patterns: list[_Pattern] = []
        self.any_address = bound_host is not None and bound_host.strip() in _WILDCARD_BINDS
        for pattern in patterns:
            if pattern == "*":
                self.allow_all = True
                continue
            if problem := check_host_pattern(pattern):
                raise ValueError(problem)
            subdomains = pattern.startswith("*.")
            text = pattern.removeprefix("*.")
            if text.count(":") > 1 and not text.startswith("["):
                text = f"[{text}]"
            parsed = split_host(text)
            assert parsed is not None
            self.patterns.append(_Pattern(parsed[0], parsed[1], subdomains))
        if bound_host and not self.any_address:
            text = bound_host.strip()
            if text.count(":") > 1 and not text.startswith("["):
                text = f"[{text}]"
            parsed = split_host(text)
            if parsed is not None:
                self.patterns.append(_Pattern(parsed[0], None, False))
        self._verdicts: dict[str, bool] = {}

    def allows(self, host: str | None) -> bool:
        """Whether a Host header value (None: the request had none) is trusted."""
        if self.allow_all:
            return True
        if not host:
            return False
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self._allows(host)
            if len(self._verdicts) >= _REMEMBERED:  # many distinct Hosts: start over
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    def _allows(self, host: str) -> bool:
        parsed = split_host(host)
        if parsed is None:
            return False
        name, port = parsed
        address = _ip(name)
        if address is not None:
            if address.is_loopback or self.any_address:
                return True
        elif name in LOOPBACK_NAMES or "." not in name:  # a single-label name
            return True
        return any(p.matches(name, port) for p in self.patterns)
