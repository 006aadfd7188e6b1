"""Wake-ups between the processes sharing a local bus journal, so that none of them polls.

Each process binds a Unix datagram socket in a folder named after the journal (under the
temporary directory: socket paths are short); after a commit that others should see (new
deliveries, ended runs) it sends one byte to every other socket there. A socket whose process is
gone is removed by the first sender that fails to reach it. Lost wake-ups cost latency, never
work: the bus also looks at the journal every ``fallback_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import tempfile
import time
from pathlib import Path


class Waker:
    def __init__(self, journal: Path) -> None:
        digest = hashlib.sha1(str(journal.resolve()).encode()).hexdigest()[:16]
        self.folder = Path(tempfile.gettempdir()) / f"wistro-wake-{digest}"
        self.folder.mkdir(mode=0o700, exist_ok=True)
        self.path = self.folder / f"{os.getpid()}.sock"
        self.event = asyncio.Event()
        self._sock: socket.socket | None = None
        self._peers: list[Path] = []
        self._peers_at = 0.0

    def open(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self._sock is not None
        with contextlib.suppress(BlockingIOError, OSError):
            while self._sock.recv(64):
                pass
        self.event.set()

    def wake_others(self) -> None:
        if self._sock is None:
            return
        now = time.monotonic()
        if now - self._peers_at > 1.0:
            self._peers = [p for p in self.folder.glob("*.sock") if p != self.path]
            self._peers_at = now
        for peer in self._peers:
            try:
                self._sock.sendto(b"!", str(peer))
            except BlockingIOError:
                pass  # its buffer is full: it has wake-ups waiting already
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    peer.unlink()  # its process is gone
                self._peers_at = 0.0
            except OSError:
                pass

    def close(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        with contextlib.suppress(OSError):
            self.path.unlink()
