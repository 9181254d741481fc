#!/usr/bin/env python3
"""Resident memory of hearth-fetch during one exchange (docs/benchmarks.md, "Agent footprint").

    scripts/fetch-helper-rss.py HELPER BODY_BYTES [https]

Starts a local HTTP (or HTTPS, with the test certificate in Tests/HearthAgentTests/Fixtures and
that file as the CA file) server that reads a POST body and holds its answer 2 s, sends HELPER
one request frame (docs/formats.md, "Fetch helper framing") with a BODY_BYTES body, samples the
helper's /proc/PID/status every 20 ms, and prints the exit status, the response's outcome and
status, and the peak VmRSS, VmHWM, RssAnon and RssFile in kB.
"""
import os, socket, ssl, struct, subprocess, sys, threading, time, http.server
helper, body_bytes = sys.argv[1], int(sys.argv[2])
https = len(sys.argv) > 3 and sys.argv[3] == "https"
fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "HearthAgentTests", "Fixtures")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers["Content-Length"]); got = 0
        while got < n: got += len(self.rfile.read(min(1 << 20, n - got)))
        time.sleep(2)
        body = b"accepted %d" % got
        self.send_response(202); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
if https:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{fixtures}/localhost-cert.pem", f"{fixtures}/localhost-key.pem")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
def s(b): return struct.pack("<I", len(b)) + b
url = f"{'https' if https else 'http'}://127.0.0.1:{port}/v1/updates".encode()
head = b"HFQ1" + bytes([1, 0]) + struct.pack("<IIQ", 5000, 30000, 16384) + s(url) + s(b"hearth-agent")
head += (b"\x01" + s(f"{fixtures}/localhost-cert.pem".encode())) if https else b"\x00"
head += b"\x00" + struct.pack("<H", 1) + s(b"Content-Type") + s(b"application/vnd.hearth.update")
body = bytes(i * 7 & 0xFF for i in range(body_bytes))
frame = head + struct.pack("<Q", len(body)) + body
p = subprocess.Popen([helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
peak = {"VmRSS": 0, "VmHWM": 0, "RssAnon": 0, "RssFile": 0}
done = threading.Event()
def sample():
    while not done.is_set():
        try:
            for line in open(f"/proc/{p.pid}/status"):
                k = line.split(":")[0]
                if k in peak: peak[k] = max(peak[k], int(line.split()[1]))
        except OSError: pass
        time.sleep(0.02)
t = threading.Thread(target=sample); t.start()
start = time.time()
out, _ = p.communicate(frame)
done.set(); t.join()
print(f"exit {p.returncode}, {len(out)} response bytes, outcome {out[4]}, status {struct.unpack('<H', out[5:7])[0]}, {time.time() - start:.2f} s")
print("helper peak (sampled every 20 ms): " + ", ".join(f"{k} {v} kB" for k, v in peak.items()))
