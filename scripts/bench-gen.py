#!/usr/bin/env python3
"""Generated files for the sync benchmark: many small files of mixed compressibility and a few
large ones, deterministic (seeded), written under DIR. Usage: bench-gen.py DIR FILES TOTAL_BYTES"""
import os
import random
import sys

root, count, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20261121)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(4000)]


pool = bytearray()
while len(pool) < (8 << 20):
    pool += b" ".join(rng.choice(words) for _ in range(12)) + b"\n"
pool = bytes(pool)


def text(n):
    out = bytearray()
    while len(out) < n:
        off = rng.randrange(0, len(pool) - 65536)
        out += pool[off : off + min(n - len(out), 65536)]
    return bytes(out)


def content(n):
    # Two thirds text-like (compresses about 3x), one third random (does not compress).
    return text(n) if rng.random() < 0.67 else os.urandom(n)


large = [("big/random.img", 200 << 20, "random"), ("big/log.txt", 150 << 20, "text"), ("big/disk.raw", 150 << 20, "mixed")]
small_budget = total - sum(size for _, size, _ in large)
avg = max(1024, small_budget // count)
for i in range(count):
    d = os.path.join(root, "d%03d" % (i % 300), "s%02d" % (i // 300 % 10))
    os.makedirs(d, exist_ok=True)
    n = max(0, int(rng.expovariate(1 / avg)))
    with open(os.path.join(d, "f%06d.dat" % i), "wb") as f:
        f.write(content(min(n, 16 * avg)))
for name, size, kind in large:
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 4 << 20)
            if kind == "random":
                f.write(os.urandom(n))
            elif kind == "text":
                f.write(text(n))
            else:
                f.write(content(n) if rng.random() < 0.7 else b"\0" * n)
            left -= n
