"""Ingest + latency probe for hearth-agent over its Unix socket (used for docs/benchmarks.md).

Thread 1 posts batches of 100 events as fast as the agent acknowledges them; thread 2 asks for
recommendations in a loop. Prints events/s and p50/p99 latency of GET /v1/recommendations.
"""
import json, socket, sys, threading, time

path = sys.argv[1]; seconds = float(sys.argv[2]); items = int(sys.argv[3])

def request(sock, method, target, body=b""):
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nContent-Type: application/json\r\n\r\n".encode()
    sock.sendall(head + body)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    header, rest = buf.split(b"\r\n\r\n", 1)
    status = int(header.split()[1])
    length = 0
    for line in header.split(b"\r\n")[1:]:
        k, v = line.split(b":", 1)
        if k.strip().lower() == b"content-length": length = int(v)
    while len(rest) < length: rest += sock.recv(65536)
    return status, rest[:length]

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path); return s

stop = time.time() + seconds
ingested = [0]; lat = []
def ingest():
    s = connect(); n = 0; ts = 1_700_000_000_000
    while time.time() < stop:
        events = [{"item": f"item-{(n + i) * 7919 % items}", "kind": ["view","click","cart","purchase"][(n+i) % 4],
                   "session": f"s-{(n // 500) % 50}", "timestamp_ms": ts + n + i} for i in range(100)]
        st, _ = request(s, "POST", "/v1/events", json.dumps({"events": events}).encode())
        assert st == 200, st
        n += 100
    ingested[0] = n
def query():
    s = connect()
    while time.time() < stop:
        t0 = time.perf_counter(); st, _ = request(s, "GET", "/v1/recommendations?session=s-1&k=10"); lat.append(time.perf_counter() - t0)
        assert st == 200, st
t1 = threading.Thread(target=ingest); t2 = threading.Thread(target=query)
start = time.time(); t1.start(); t2.start(); t1.join(); t2.join(); dur = time.time() - start
lat.sort()
print(json.dumps({"events_per_s": round(ingested[0] / dur), "recommend_requests": len(lat),
  "p50_ms": round(lat[len(lat)//2] * 1000, 3), "p99_ms": round(lat[int(len(lat)*0.99)] * 1000, 3)}))
