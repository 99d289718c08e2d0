"""tests.conftest.free_port: ports for the services the tests start, outside the kernel's ephemeral range and in a
block per test worker, so neither another worker nor an outgoing connection is handed the same one."""

import itertools
import socket

import pytest

from tests import conftest
from tests.conftest import PORTS_FROM, PORTS_PER_WORKER, _worker_index, free_port


def _block_start() -> int:
    return PORTS_FROM + (_worker_index() % 11) * PORTS_PER_WORKER


def test_ports_come_from_this_workers_block_below_the_ephemeral_range() -> None:
    first = _block_start()
    ports = [free_port() for _ in range(5)]
    assert all(first <= port < first + PORTS_PER_WORKER for port in ports)
    assert all(port < 32_768 for port in ports)
    assert len(set(ports)) == len(ports)


def test_a_port_something_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    first = _block_start()
    with socket.socket() as listener:
        for offset in range(PORTS_PER_WORKER):  # a port of the block this test can listen on
            try:
                listener.bind(("127.0.0.1", first + offset))
            except OSError:
                continue
            break
        listener.listen()
        monkeypatch.setattr(conftest, "_ports_taken", itertools.count(offset))  # that port is the next candidate
        port = free_port()
        assert port != first + offset
        assert first <= port < first + PORTS_PER_WORKER
