#!/usr/bin/env bash
# Resident memory of hearth-agent idle and through one training round (docs/benchmarks.md).
#
#   scripts/agent-footprint.sh AGENT BENCH ITEMS DIM EVENTS [UNIT]
#
# AGENT: the (release, stripped) hearth-agent; BENCH: a release hearth-bench (makes the model).
# Starts the agent on a temporary state directory with an ITEMS x DIM model, reads VmRSS and
# VmHWM from /proc after 3 s idle, posts EVENTS events (batches of 100) so that one round
# trains (UNIT: device or session), waits for the round to queue its update, and reads VmHWM
# again (the high-water mark is reset after the idle reading). SMAPS=1 adds the idle resident
# memory per mapping (/proc/PID/smaps). Prints one line per figure, in kB
# as the kernel reports them. Set GLIBC_TUNABLES as systemd/hearth-agent.service does to measure
# the shipped configuration. WAIT_SECONDS (default 120) bounds the wait for the round.
set -euo pipefail
agent="$1"; bench="$2"; items="$3"; dim="$4"; events="$5"; unit="${6:-device}"
dir="$(mktemp -d /tmp/hfp-XXXXXX)"
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$dir"' EXIT
trap 'exit 1' INT TERM
mkdir -p "$dir/state/models"
"$bench" model-file --items "$items" --dim "$dim" --output "$dir/state/models/current.hrth" >/dev/null
cat >"$dir/agent.toml" <<EOF
[agent]
state_directory = "$dir/state"
socket = "$dir/a.sock"
[training]
window = "00:00-24:00"
max_load = 64
require_mains_power = false
min_new_events = $events
max_seconds = 3600
[privacy]
unit = "$unit"
epsilon_budget = 100.0
EOF
"$agent" --config "$dir/agent.toml" --training-check-interval 1 --log-level debug 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [ -S "$dir/a.sock" ] && break; sleep 0.1; done
sleep 3
grep -E "VmRSS|VmHWM" "/proc/$pid/status" | sed 's/^/idle /'
grep -E "RssAnon|RssFile" "/proc/$pid/status" | sed 's/^/idle /'
# SMAPS=1: the idle resident memory per mapped file (binary, each shared library, [anon], ...).
if [ -n "${SMAPS:-}" ]; then
    awk '/^[0-9a-f]+-[0-9a-f]+ / { path = (NF >= 6 ? $6 : "[anon]") } /^Rss:/ { rss[path] += $2 }
         END { for (p in rss) printf "idle-smaps %8d kB %s\n", rss[p], p }' "/proc/$pid/smaps" | sort -k2,2nr
fi
# Reset the high-water mark (clear_refs 5), so that the next VmHWM is the round's own peak
# and not the start-up peak (decoding the model file).
echo 5 >"/proc/$pid/clear_refs"
python3 - "$dir/a.sock" "$events" "$items" <<'EOF'
import json, socket, sys, time
now = int(time.time() * 1000) - 3_600_000
path, total, items = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path)
for start in range(0, total, 100):
    events = [{"item": f"item-{(start + i) * 7919 % items}", "kind": "view", "session": f"s-{(start + i) // 50}",
               "timestamp_ms": now + start + i} for i in range(min(100, total - start))]
    body = json.dumps({"events": events}).encode()
    s.sendall(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    buf = b""
    while b"\r\n\r\n" not in buf: buf += s.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(rest) < length: rest += s.recv(65536)
    assert b" 200 " in head.split(b"\r\n")[0], head
EOF
start=$(date +%s.%N)
for _ in $(seq $(( ${WAIT_SECONDS:-120} * 10 ))); do grep -q "training round queued an update\|training round failed\|abandoned" "$dir/log" && break; sleep 0.1; done
end=$(date +%s.%N)
grep -E "training round|not training" "$dir/log" | tail -3 | sed "s/^/log /" || true
grep -E "VmRSS|VmHWM" "/proc/$pid/status" | sed 's/^/after-round /'
echo "round-wait-seconds $(echo "$end - $start" | bc)"
