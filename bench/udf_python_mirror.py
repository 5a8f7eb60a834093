#!/usr/bin/python3
"""Minimal mirror UDF in Python, for benchmarks only (bench/udf_compare.sh).

Speaks the Kapacitor UDF protocol with Debian's python3-protobuf: every Request is parsed
into agent.Request, every Point, BeginBatch and EndBatch is copied into an agent.Response
and sent back, keepalives are answered, Info/Init/Snapshot/Restore get trivial answers.
Like agentry's C++ agent it reads large chunks and writes all the responses for a chunk
with one write, so the comparison is about the language and its protobuf runtime rather
than about syscall strategy.

    udf_python_mirror.py --pb-dir DIR             # process UDF on stdin/stdout
    udf_python_mirror.py --pb-dir DIR --socket P  # socket UDF: serve connections on P

DIR must hold udf_pb2.py, generated with:
    protoc --python_out=DIR -I agentry/proto agentry/proto/udf.proto
"""

import argparse
import os
import signal
import socket
import sys
import threading


def encode_varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def serve(pb, read, write):
    """Runs one connection: read(n) -> bytes (b"" at EOF), write(bytes)."""
    buf = b""
    pos = 0
    req = pb.Request()
    while True:
        chunk = read(1 << 16)
        if not chunk:
            return
        buf = buf[pos:] + chunk
        pos = 0
        out = []
        while True:
            # Length prefix.
            n = 0
            shift = 0
            i = pos
            complete = False
            while i < len(buf):
                b = buf[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    complete = True
                    break
            if not complete or i + n > len(buf):
                break
            req.ParseFromString(buf[i:i + n])
            pos = i + n
            resp = pb.Response()
            kind = req.WhichOneof("message")
            if kind == "point":
                resp.point.CopyFrom(req.point)
            elif kind == "begin":
                resp.begin.CopyFrom(req.begin)
            elif kind == "end":
                resp.end.CopyFrom(req.end)
            elif kind == "keepalive":
                resp.keepalive.time = req.keepalive.time
            elif kind == "info":
                resp.info.wants = pb.STREAM
                resp.info.provides = pb.STREAM
            elif kind == "init":
                resp.init.success = True
            elif kind == "snapshot":
                resp.snapshot.snapshot = b""
            elif kind == "restore":
                resp.restore.success = True
            else:
                continue
            data = resp.SerializeToString()
            out.append(encode_varint(len(data)))
            out.append(data)
        if out:
            write(b"".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pb-dir", required=True, help="directory holding udf_pb2.py")
    parser.add_argument("--socket", help="serve on this unix socket instead of stdin/stdout")
    args = parser.parse_args()
    sys.path.insert(0, args.pb_dir)
    import udf_pb2 as pb  # noqa: E402  (generated at bench time)

    if not args.socket:
        def write_all(data):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]

        serve(pb, lambda n: os.read(0, n), write_all)
        return

    if os.path.exists(args.socket):
        os.unlink(args.socket)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    listener.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def handle(conn):
        with conn:
            serve(pb, conn.recv, conn.sendall)
            conn.shutdown(socket.SHUT_WR)

    try:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        os.unlink(args.socket)


if __name__ == "__main__":
    main()
