#!/usr/bin/env python3
"""Ask a Kafka broker for cluster metadata; exit 0 once it lists at least one broker.

Standard library only, so deploy/local-kafka can use it before any virtualenv exists.
An open port is not enough: a KRaft broker accepts connections before it has joined
its quorum, and clients fail until the Metadata response names a broker.

Usage: kafka_ready.py HOST PORT [TIMEOUT_S]
"""
from __future__ import annotations

import socket
import struct
import sys
import time

METADATA_API_KEY = 3
METADATA_VERSION = 4  # Kafka 4.x removed Metadata v0-v3 (KIP-896); v4 is non-flexible.
CLIENT_ID = b"tokenplan-ready"


def metadata_request(correlation_id: int) -> bytes:
    """Metadata v4 for all topics (null array), no auto-creation."""
    header = struct.pack(">hhih", METADATA_API_KEY, METADATA_VERSION, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    body = struct.pack(">i?", -1, False)
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return chunks


def broker_count(host: str, port: int, timeout_s: float) -> int:
    """Number of brokers in the Metadata v4 response (throttle int32, then the brokers array)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(metadata_request(1))
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        response = recv_exact(sock, size)
    _correlation, _throttle, brokers = struct.unpack(">iii", response[:12])
    return brokers


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    timeout_s = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if broker_count(host, port, 2.0) > 0:
                return 0
        except (OSError, ConnectionError, struct.error):
            pass
        if time.monotonic() >= deadline:
            return 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
