"""Whether the emulator's ports are free is asked by connecting, so a quick restart is never refused."""

import socket

import pytest

from local.emulator import EmulatorError, ensure_ports_free, has_listener


def listening_socket() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, int(server.getsockname()[1])


def test_a_port_with_a_listener_is_refused_with_a_message_that_says_what_to_do() -> None:
    server, port = listening_socket()
    with server, pytest.raises(EmulatorError, match=rf"port\(s\) {port} already have a listener.*ss -ltnp"):
        ensure_ports_free((port,))


def test_a_port_left_in_time_wait_by_a_stopped_server_counts_as_free() -> None:
    # Given a server that closed a connection first (its side stays in TIME_WAIT) and then stopped
    server, port = listening_socket()
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()
    client.recv(1)
    client.close()
    server.close()
    # Then a plain bind, as the old probe did, still trips on it
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    # But nothing listens there, so the emulator may start
    assert not has_listener(port)
    ensure_ports_free((port,))
