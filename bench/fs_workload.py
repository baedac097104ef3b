#!/usr/bin/env python3
"""The filesystem workload of bench/fs, run the same way on every filesystem.

usage: fs_workload.py DIR
Prints one line of JSON: sequential write MB/s of a 512 MiB file (ending with fsync),
sequential read MB/s of it twice (warm: right after the write, with whatever cache the
filesystem kept; cold: after the page cache was dropped), and create+stat+unlink
operations per second over 10,000 small files.
"""

import json
import os
import sys
import time

SIZE = 512 << 20
BLOCK = 1 << 20
FILES = 10_000


def drop_caches() -> None:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def read_rate(path: str) -> float:
    """Reads `path` whole in 1 MiB reads; MB/s."""
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    total = 0
    while True:
        chunk = os.read(fd, BLOCK)
        if not chunk:
            break
        total += len(chunk)
    os.close(fd)
    assert total == SIZE, f"read {total} bytes of {SIZE}"
    return total / (1 << 20) / (time.perf_counter() - start)


def main() -> int:
    root = sys.argv[1]
    path = os.path.join(root, "seq.bin")
    block = os.urandom(BLOCK)

    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(SIZE // BLOCK):
        os.write(fd, block)
    os.fsync(fd)
    os.close(fd)
    write_mbs = SIZE / (1 << 20) / (time.perf_counter() - start)

    read_warm_mbs = read_rate(path)
    drop_caches()
    read_cold_mbs = read_rate(path)
    os.unlink(path)

    small = os.path.join(root, "small")
    os.mkdir(small)
    start = time.perf_counter()
    for i in range(FILES):
        name = os.path.join(small, f"f{i}")
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644))
        os.stat(name)
        os.unlink(name)
    small_ops = FILES / (time.perf_counter() - start)
    os.rmdir(small)

    print(json.dumps({
        "write_mbs": write_mbs,
        "read_warm_mbs": read_warm_mbs,
        "read_cold_mbs": read_cold_mbs,
        "small_ops": small_ops,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
