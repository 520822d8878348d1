#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, makes one request on each, and holds them idle.

Prints "open N" once all are idle, then waits for a line on stdin (or EOF) and closes them.
Used by bench/proxy.sh to measure a proxy's memory with many idle client connections.
"""
import resource
import socket
import sys


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    count = int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 100)), hard))
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    held = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(request)
        response = b""
        # One small response: the head and a short body arrive together.
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"backend"):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit(f"connection {len(held)} closed by the proxy")
            response += chunk
        held.append(s)
    print(f"open {len(held)}", flush=True)
    sys.stdin.readline()
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
