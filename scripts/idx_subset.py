#!/usr/bin/env python3
"""Writes the first N training images of Fashion-MNIST (and the whole official test set) as
gzip IDX files, the format `tune --data-dir` reads: a data set small enough to carry.

Usage: idx_subset.py SRC_DIR DEST_DIR N
"""
import gzip
import os
import struct
import sys


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return data[: 4 + 4 * dims], shape, data[4 + 4 * dims :]


def write_first(src, dest, n):
    header, shape, body = read_idx(src)
    item = len(body) // shape[0]
    n = min(n, shape[0])
    new_header = header[:4] + struct.pack(">I", n) + header[8:]
    with gzip.open(dest, "wb", compresslevel=9) as f:
        f.write(new_header + body[: n * item])


def main():
    src, dest, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(dest, exist_ok=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        write_first(os.path.join(src, name), os.path.join(dest, name), n)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        write_first(os.path.join(src, name), os.path.join(dest, name), 10_000)


if __name__ == "__main__":
    main()
