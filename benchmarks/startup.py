#!/usr/bin/env python3
"""Node start-up time: from exec to the first accepted connection, and to the first proxied response.

Usage: startup.py <rama-node executable or .dll> <origin-port> <count>   (prints "accept_ms=a,b,... response_ms=a,b,...")
Each start is a fresh `rama-node --listen 127.0.0.1:<free port>` with the node's defaults. "Accepted" is the
first TCP connect that completes and is answered (the listener actor bound and its accept loop running); "response"
is the first `GET http://127.0.0.1:<origin>/1k` through it that returns a whole response (the proxy path's first run).
"""
import socket, subprocess, sys, time

node, origin, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


accepts, responses = [], []
for _ in range(count):
    port = free_port()
    t0 = time.monotonic()
    p = subprocess.Popen((["dotnet", node] if node.endswith(".dll") else [node]) + ["--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    accepted = None
    try:
        deadline = t0 + 30
        while time.monotonic() < deadline:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                time.sleep(0.002)
                continue
            if accepted is None:
                accepted = time.monotonic() - t0
            s.sendall(f"GET http://127.0.0.1:{origin}/1k HTTP/1.1\r\nHost: 127.0.0.1:{origin}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
            if data.startswith(b"HTTP/1.1 200") and len(data) >= 1024:
                responses.append(time.monotonic() - t0)
                accepts.append(accepted)
                break
        else:
            raise SystemExit("node did not answer within 30 s")
    finally:
        p.terminate()
        p.wait()
ms = lambda xs: ",".join(f"{x * 1000:.0f}" for x in xs)
print(f"accept_ms={ms(accepts)} response_ms={ms(responses)}")
