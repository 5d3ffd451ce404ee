"""UDP: one JSON-RPC message per datagram, replies and notifications to the sender. Best effort.

Nothing is retransmitted or reordered: a lost datagram is lost (a streamed chunk's ``seq`` shows the gap).
A request must fit one datagram (``MAX_DATAGRAM`` bytes); an answer that does not fit is replaced by a -32011
error datagram. UDP has no connection, so handle ids come from the shared, expiring lease table, and a peer
address that authenticated (``rkio.auth`` or an ``api_key`` param) stays authenticated.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

from rkio.api.jsonrpc.dispatcher import Dispatcher
from rkio.api.jsonrpc.protocol import encode, error_message
from rkio.api.jsonrpc.session import MAX_IN_FLIGHT, Send, Session
from rkio.api.jsonrpc.transports.sockets import parse_host_port
from rkio.errors import Busy, PayloadTooLarge

log = logging.getLogger("rkio.jsonrpc")

MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
MAX_PEERS = 1024  # peer sessions remembered (least recently seen forgotten first)

Address = Any
PeerSessionFactory = Callable[[Send], Session]


def fit_datagram(data: bytes) -> bytes:
    if len(data) <= MAX_DATAGRAM:
        return data
    err = PayloadTooLarge(
        f"the answer ({len(data)} bytes) does not fit one datagram ({MAX_DATAGRAM} bytes); "
        "use another transport for large results"
    )
    return encode(error_message(None, err))


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, dispatcher: Dispatcher, new_session: PeerSessionFactory) -> None:
        self.dispatcher = dispatcher
        self.new_session = new_session
        self.transport: asyncio.DatagramTransport | None = None
        self.peers: OrderedDict[Address, Session] = OrderedDict()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def _sendto(self, data: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(fit_datagram(data), addr)

    def session_for(self, addr: Address) -> Session:
        session = self.peers.get(addr)
        if session is None:

            async def send(message: dict[str, Any]) -> None:
                self._sendto(encode(message), addr)

            session = self.peers[addr] = self.new_session(send)
            while len(self.peers) > MAX_PEERS:
                self.peers.popitem(last=False)
        self.peers.move_to_end(addr)
        return session

    def datagram_received(self, data: bytes, addr: Address) -> None:
        session = self.session_for(addr)
        if not session.try_admit(self._answer(data, addr, session)):  # a peer flooding the server
            err = Busy(f"more than {MAX_IN_FLIGHT} requests in flight from this address", retry_after=1.0)
            self._sendto(encode(error_message(None, err)), addr)

    async def _answer(self, data: bytes, addr: Address, session: Session) -> None:
        reply = await self.dispatcher.handle(data, session)
        if reply is not None:
            self._sendto(reply, addr)

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        for session in list(self.peers.values()):
            await session.close()


async def start_udp(address: str, dispatcher: Dispatcher, new_session: PeerSessionFactory) -> UdpProtocol:
    host, port = parse_host_port(address, "--rpc-udp")
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpProtocol(dispatcher, new_session), local_addr=(host, port)
    )
    log.info("JSON-RPC listening on udp:%s:%d (best effort, %d-byte datagrams)", host, port, MAX_DATAGRAM)
    return protocol
