#!/usr/bin/env bash
# Resident memory of hearth-agent after it has talked to an aggregator (docs/benchmarks.md,
# "Agent footprint"): the agent's exchanges run in hearth-fetch, so they should leave nothing
# mapped behind in the agent.
#
#   scripts/agent-exchange-footprint.sh AGENT BENCH
#
# AGENT: a release hearth-agent with hearth-fetch beside it (scripts/build-agent-release.sh);
# BENCH: a release hearth-bench (makes the 3,000 x 32 model). Starts a stub aggregator on
# loopback (Python: 404 to GET /v1/plan, 202 to POST /v1/updates), the agent pointed at it,
# reads VmRSS after 3 s idle, posts 1,000 events so that one round trains and its update is
# uploaded through hearth-fetch, then prints the stub's requests, VmRSS and VmHWM, and how many
# libcurl mappings the agent has (/proc/PID/maps). Set GLIBC_TUNABLES as the unit does.
set -euo pipefail
agent="$1"; bench="$2"
dir="$(mktemp -d /tmp/hfx-XXXXXX)"; pid=""; spid=""
trap 'for p in $pid $spid; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
mkdir -p "$dir/state/models"
"$bench" model-file --items 3000 --dim 32 --output "$dir/state/models/current.hrth" >/dev/null
python3 - "$dir/port" "$dir/requests" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, code, body=b""):
        open(sys.argv[2], "a").write(f"{self.command} {self.path} {code}\n")
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self): self.reply(404, b"no plan")
    def do_POST(self):
        n = int(self.headers["Content-Length"]); self.rfile.read(n); self.reply(202, b"accepted")
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
spid=$!
for _ in $(seq 50); do [ -s "$dir/port" ] && break; sleep 0.1; done
echo "device-1-secret" > "$dir/credential"
cat >"$dir/agent.toml" <<EOT
[agent]
state_directory = "$dir/state"
socket = "$dir/a.sock"
[training]
window = "00:00-24:00"
max_load = 64
require_mains_power = false
min_new_events = 1000
[privacy]
epsilon_budget = 100.0
[upload]
aggregator_url = "http://127.0.0.1:$(cat "$dir/port")"
credential_file = "$dir/credential"
EOT
"$agent" --config "$dir/agent.toml" --training-check-interval 1 --upload-interval 1 --log-level debug 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [ -S "$dir/a.sock" ] && break; sleep 0.1; done
sleep 3
grep -E "VmRSS" "/proc/$pid/status" | sed 's/^/idle /'
python3 - "$dir/a.sock" <<'PY'
import json, socket, sys, time
now = int(time.time() * 1000) - 3_600_000
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sys.argv[1])
for start in range(0, 1000, 100):
    events = [{"item": f"item-{(start + i) * 7919 % 3000}", "kind": "view", "session": f"s-{(start + i) // 50}", "timestamp_ms": now + start + i} for i in range(100)]
    body = json.dumps({"events": events}).encode()
    s.sendall(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    buf = b""
    while b"\r\n\r\n" not in buf: buf += s.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(rest) < length: rest += s.recv(65536)
PY
for _ in $(seq 600); do grep -q "update delivered" "$dir/log" && break; sleep 0.1; done
sleep 3
grep -E "update delivered|upload failed|outbox drained" "$dir/log" | head -3 | sed 's/^/log /'
sed 's/^/stub /' "$dir/requests"
grep -E "VmRSS|VmHWM" "/proc/$pid/status" | sed 's/^/after-upload /'
grep -c "libcurl" "/proc/$pid/maps" | sed 's/^/libcurl-mappings /' || true
