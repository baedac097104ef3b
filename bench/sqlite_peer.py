#!/usr/bin/env python3
"""The SQLite peer of bench/storage.rs: durable inserts in WAL mode with synchronous=FULL.

usage: sqlite_peer.py DB CLIENTS PUTS_PER_CLIENT VALUE_BYTES
Each client is a thread with its own connection, committing every insert on its own
(one transaction per insert, like one acknowledged kv put). Prints puts per second.
"""

import sqlite3
import sys
import threading
import time


def main() -> int:
    db, clients, puts, value_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    setup = sqlite3.connect(db)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB)")
    setup.commit()
    setup.close()
    value = b"v" * value_bytes

    def client(c: int) -> None:
        conn = sqlite3.connect(db, timeout=60, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        for i in range(puts):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"/bench/c{c}/k{i}", value))
            conn.execute("COMMIT")
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    print(f"{clients * puts / elapsed:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
