#!/usr/bin/env python3
"""Tiny TCP/UDP probes for `testbed.sh check`, run inside the testbed's namespaces.

    probe.py listen tcp|udp HOST PORT[,PORT...] SECONDS
        Prints "ready", then one line "<proto> <local port> <peer ip> <peer port>" per TCP
        connection accepted or UDP datagram received, until SECONDS pass or SIGTERM.
    probe.py connect HOST PORT TIMEOUT
        A TCP connect: prints "connected" and exits 0, or "failed: <why>" and exits 1.
    probe.py udp-send HOST PORT[,PORT...] [FROM_PORT]
        Sends a datagram to each port from one socket (bound to FROM_PORT when given), so a
        NAT maps all of them from the same inside endpoint.

Only ever used on the testbed's own addresses; every call is bounded in time.
"""

import selectors
import signal
import socket
import sys
import time


def ports(text):
    return [int(p) for p in text.split(",")]


def listen(proto, host, port_list, seconds):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sel = selectors.DefaultSelector()
    for port in port_list:
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if proto == "tcp":
            sock.listen(16)
        sel.register(sock, selectors.EVENT_READ, port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for key, _ in sel.select(timeout=left):
            if proto == "tcp":
                conn, peer = key.fileobj.accept()
                conn.close()
            else:
                _, peer = key.fileobj.recvfrom(2048)
            print(f"{proto} {key.data} {peer[0]} {peer[1]}", flush=True)


def connect(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            print("connected")
            return 0
    except OSError as err:
        print(f"failed: {err}")
        return 1


def udp_send(host, port_list, from_port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if from_port is not None:
            sock.bind(("0.0.0.0", from_port))
        for _ in range(2):  # twice: the first may wait on ARP
            for port in port_list:
                try:
                    sock.sendto(b"probe", (host, port))
                except OSError as err:
                    print(f"failed: {err}")
                    return 1
            time.sleep(0.1)
    print("sent")
    return 0


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "listen" and len(argv) == 6 and argv[2] in ("tcp", "udp"):
        listen(argv[2], argv[3], ports(argv[4]), float(argv[5]))
        return 0
    if cmd == "connect" and len(argv) == 5:
        return connect(argv[2], int(argv[3]), float(argv[4]))
    if cmd == "udp-send" and len(argv) in (4, 5):
        return udp_send(argv[2], ports(argv[3]), int(argv[4]) if len(argv) == 5 else None)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
