"""A round-robin HTTP load balancer: the stand-in for the HAProxy/ELB a deployment puts in front
of its web hosts (PUBLIC_URL points at it, so Cloudinary's notifications reach every web host).

Written here because the machine has no HAProxy or nginx package installed and CI must not
depend on one; it does only what the rig needs: each request goes to the next backend (its
``Connection`` header is set to ``close``, as HAProxy's ``option http-server-close`` would, so
a keep-alive client cannot pin itself to one host), a backend that does not accept within
``--connect-timeout`` is skipped and left out for ``--down-for`` seconds (a passive health
check), and the bytes are piped both ways.

    python -m tests.cluster.balancer --listen 10.231.0.5:8000 --backend 10.231.0.21:8000 --backend ...

One line per connection on stdout (``conn <backend>``) lets the rig count the spread.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import time


class Balancer:
    def __init__(self, backends: list[tuple[str, int]], connect_timeout: float, down_for: float) -> None:
        self.backends = backends
        self.connect_timeout = connect_timeout
        self.down_for = down_for
        self._turn = itertools.count()
        self._down_until = [0.0] * len(backends)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, tuple[str, int]]:
        now = time.monotonic()
        start = next(self._turn)
        order = [(start + k) % len(self.backends) for k in range(len(self.backends))]
        # Backends marked down are tried last, not never: they may be back.
        order.sort(key=lambda i: self._down_until[i] > now)
        for i in order:
            host, port = self.backends[i]
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.connect_timeout)
                self._down_until[i] = 0.0
                return reader, writer, self.backends[i]
            except (OSError, asyncio.TimeoutError):
                self._down_until[i] = time.monotonic() + self.down_for
                print(f"down {host}:{port}", flush=True)
        raise ConnectionError("no backend accepted the connection")

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            head = await client_reader.readuntil(b"\r\n\r\n")
            reader, writer, (host, port) = await self._open()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            client_writer.close()
            return
        print(f"conn {host}:{port}", flush=True)
        writer.write(_one_request(head))
        await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))


def _one_request(head: bytes) -> bytes:
    """The request head with ``Connection: close``: the backend answers and closes, and so the
    client opens a new connection (to the next backend) for its next request."""
    lines = [line for line in head.split(b"\r\n") if line and not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close", b"", b""])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=_address, required=True)
    parser.add_argument("--backend", type=_address, action="append", required=True)
    parser.add_argument("--connect-timeout", type=float, default=1.0)
    parser.add_argument("--down-for", type=float, default=5.0)
    args = parser.parse_args()
    balancer = Balancer(args.backend, args.connect_timeout, args.down_for)
    server = await asyncio.start_server(balancer.handle, *args.listen)
    print(f"listening {args.listen[0]}:{args.listen[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
