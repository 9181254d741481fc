#!/usr/bin/env bash
# The agent's behaviour timeline under a steady load (issue 8; docs/reliability.md, "Soak").
#
# Starts a release hearth-agent on a temporary state directory with an ITEMS x DIM model, with
# the environment the product runs it with (the Environment= lines of
# systemd/hearth-agent.service, e.g. its glibc malloc tunables), posts events at a steady rate
# (batches on a fixed schedule, not as fast as acknowledged) while a second client asks for
# recommendations at a steady rate, lets training rounds run (window all day, no power or load
# condition, a round every MIN_NEW_EVENTS events; no aggregator, so each round's update stays in
# the outbox), and every SAMPLE seconds records: VmRSS (and its anonymous and file-backed
# parts), VmHWM, open file descriptors, threads, glibc malloc arenas (heaps seen in
# /proc/PID/maps), events_total (GET /v1/status), the p50/p99 latency of the recommendations
# answered in that window, the database and WAL sizes, training rounds logged so far.
# Writes the timeline as CSV and prints a per-minute table, a per-round table (VmHWM after each
# round), a summary and a verdict.
#
# Verdict "flat" (all of, after a warm-up of WARMUP minutes):
#   - every VmRSS sample is within +-BAND % of the median of those samples;
#   - the least-squares line through them rises by less than BAND/2 % of that median over the
#     post-warm-up window;
#   - VmHWM grows by at most HWM_SLACK % over the last HWM_ROUNDS training rounds (from the
#     first sample showing round R-HWM_ROUNDS to the end, R being the rounds at the end);
#   - open fds at the end exceed those at the first sample by at most FD_SLACK.
# Exits 1 when the verdict is "not flat", a request fails or the agent exits.
#
# Usage: scripts/soak.sh [--minutes M] [--rate EVENTS_PER_S] [--batch N] [--recommend-rate R]
#                        [--sample S] [--items I] [--dim D] [--min-new-events N]
#                        [--warmup W] [--band PCT] [--hwm-rounds K] [--no-unit-env]
#                        [--agent PATH] [--bench PATH] [--scratch DIR] [--csv FILE] [--keep DIR]
#   --minutes        run time (default 10; fractions allowed: 0.5 is 30 s)
#   --rate, --batch  events per second and events per POST (default 200, 20)
#   --recommend-rate recommendation requests per second (default 20)
#   --sample         seconds between samples (default 10)
#   --items, --dim   the model (default 3000 x 32, the kiosk size of docs/benchmarks.md)
#   --min-new-events training.min_new_events (default 10000: a round every ~50 s at 200/s)
#   --warmup         minutes left out of the verdict (default 3)
#   --band           VmRSS band in % around the post-warm-up median (default 10)
#   --hwm-rounds     rounds over which VmHWM must not grow (default 5)
#   --no-unit-env    run the agent without the unit's Environment= settings
#   --agent, --bench a release hearth-agent and a hearth-bench (model-file); without them both are
#                    built in SCRATCH with scripts/build-agent-release.sh's flags
#   --scratch        SwiftPM scratch path for that build (default .build-soak)
#   --csv            the timeline (default SCRATCH/soak.csv)
#   --keep DIR       keep the agent's state directory and log in DIR (default: removed)
# Environment: FD_SLACK (default 4), HWM_SLACK (percent, default 1).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
minutes=10 rate=200 batch=20 recommend_rate=20 sample=10 items=3000 dim=32 min_new_events=10000
warmup=3 band=10 hwm_rounds=5 unit_env=yes
agent="" bench="" scratch=".build-soak" csv="" keep=""
while (($#)); do
    case "$1" in
    --minutes) minutes=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --batch) batch=${2:?}; shift 2 ;;
    --recommend-rate) recommend_rate=${2:?}; shift 2 ;;
    --sample) sample=${2:?}; shift 2 ;;
    --items) items=${2:?}; shift 2 ;;
    --dim) dim=${2:?}; shift 2 ;;
    --min-new-events) min_new_events=${2:?}; shift 2 ;;
    --warmup) warmup=${2:?}; shift 2 ;;
    --band) band=${2:?}; shift 2 ;;
    --hwm-rounds) hwm_rounds=${2:?}; shift 2 ;;
    --no-unit-env) unit_env=no; shift ;;
    --agent) agent=$(realpath "${2:?}"); shift 2 ;;
    --bench) bench=$(realpath "${2:?}"); shift 2 ;;
    --scratch) scratch=${2:?}; shift 2 ;;
    --csv) csv=$(realpath -m "${2:?}"); shift 2 ;;
    --keep) keep=$(realpath -m "${2:?}"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

cd "$repo"
[[ "$scratch" = /* ]] || scratch="$repo/$scratch"
csv=${csv:-$scratch/soak.csv}
# The release flags of scripts/build-agent-release.sh, for both products, so that they share
# the scratch directory's modules instead of rebuilding them for each other.
release_flags=(-c release --static-swift-stdlib -Xswiftc -Osize -Xswiftc -use-ld=lld
    -Xlinker --no-export-dynamic -Xlinker -z -Xlinker pack-relative-relocs)
if [ -z "$agent" ]; then
    scripts/build-agent-release.sh "$scratch/out/hearth-agent" "$scratch" >&2
    agent="$scratch/out/hearth-agent"
fi
if [ -z "$bench" ]; then
    swift build --scratch-path "$scratch" "${release_flags[@]}" --product hearth-bench >&2
    bench="$scratch/release/hearth-bench"
fi

dir="$(mktemp -d /tmp/hearth-soak-XXXXXX)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$dir"/. "$keep"/; fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
mkdir -p "$dir/state/models" "$(dirname "$csv")"
"$bench" model-file --items "$items" --dim "$dim" --output "$dir/state/models/current.hrth" >/dev/null
cat >"$dir/agent.toml" <<EOF
[agent]
state_directory = "$dir/state"
socket = "$dir/a.sock"
[model]
dimension = $dim
[training]
window = "00:00-24:00"
max_load = 64
require_mains_power = false
min_new_events = $min_new_events
max_seconds = 600
[privacy]
epsilon_budget = 1000000.0
EOF
"$agent" --check-config --config "$dir/agent.toml" >/dev/null
# The environment the unit gives the agent (Environment=KEY=VALUE lines; values without spaces).
agent_env=()
if [ "$unit_env" = yes ]; then
    while IFS= read -r line; do
        for assignment in ${line#Environment=}; do agent_env+=("${assignment//\"/}"); done
    done < <(grep '^Environment=' "$repo/systemd/hearth-agent.service" || true)
fi
env ${agent_env[@]+"${agent_env[@]}"} "$agent" --config "$dir/agent.toml" --training-check-interval 5 --log-level info 2>"$dir/agent.log" &
pid=$!
for _ in $(seq 200); do [ -S "$dir/a.sock" ] && break; sleep 0.05; done
[ -S "$dir/a.sock" ] || { echo "soak: the agent did not open its socket" >&2; cat "$dir/agent.log" >&2; exit 1; }

echo "soak: agent $agent (pid $pid), model ${items} x ${dim}, ${minutes} min, ${rate} events/s in batches of ${batch}, ${recommend_rate} recommendations/s, sample every ${sample} s"
echo "soak: agent environment from systemd/hearth-agent.service: ${agent_env[*]:-(none)}"
python3 - "$dir/a.sock" "$pid" "$dir/state" "$dir/agent.log" "$csv" "$minutes" "$rate" "$batch" \
    "$recommend_rate" "$sample" "$items" "${FD_SLACK:-4}" "$warmup" "$band" "$hwm_rounds" "${HWM_SLACK:-1}" <<'EOF'
import json, math, os, socket, sys, threading, time

(path, pid, state, log_path, csv_path, minutes, rate, batch, rec_rate, sample, items,
 fd_slack, warmup, band, hwm_rounds, hwm_slack) = sys.argv[1:]
pid = int(pid); minutes = float(minutes); rate = float(rate); batch = int(batch)
rec_rate = float(rec_rate); sample = float(sample); items = int(items); fd_slack = int(fd_slack)
warmup = float(warmup); band = float(band); hwm_rounds = int(hwm_rounds); hwm_slack = float(hwm_slack)

def request(sock, method, target, body=b""):
    head = (f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/json\r\n\r\n").encode()
    sock.sendall(head + body)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk: raise ConnectionError("connection closed by the agent")
        buf += chunk
    header, rest = buf.split(b"\r\n\r\n", 1)
    status = int(header.split()[1])
    length = 0
    for line in header.split(b"\r\n")[1:]:
        k, v = line.split(b":", 1)
        if k.strip().lower() == b"content-length": length = int(v)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk: raise ConnectionError("connection closed by the agent")
        rest += chunk
    return status, rest[:length]

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path); return s

start = time.monotonic()
stop = start + minutes * 60
lock = threading.Lock()
latencies = []          # recommendation latencies (s) since the last sample
errors = []
sent = [0]

def paced(interval, body):
    """Calls body() at start + n * interval (a steady rate; a late call does not bunch up the next)."""
    n = 0
    while True:
        due = start + n * interval
        if due >= stop: return
        delay = due - time.monotonic()
        if delay > 0: time.sleep(delay)
        body(n)
        n += 1

def ingest():
    s = connect(); ts = int(time.time() * 1000) - 3_600_000
    def post(n):
        first = n * batch
        events = [{"item": f"item-{(first + i) * 7919 % items}", "kind": ["view", "click", "cart", "purchase"][(first + i) % 4],
                   "session": f"s-{((first + i) // 200) % 500}", "timestamp_ms": ts + first + i} for i in range(batch)]
        st, body = request(s, "POST", "/v1/events", json.dumps({"events": events}).encode())
        if st != 200: raise RuntimeError(f"POST /v1/events answered {st}: {body[:200]!r}")
        sent[0] += batch
    paced(batch / rate, post)

def recommend():
    s = connect()
    def get(n):
        t0 = time.perf_counter()
        st, body = request(s, "GET", f"/v1/recommendations?session=s-{n % 500}&k=10")
        dt = time.perf_counter() - t0
        if st != 200: raise RuntimeError(f"GET /v1/recommendations answered {st}: {body[:200]!r}")
        with lock: latencies.append(dt)
    paced(1 / rec_rate, get)

def guarded(fn):
    def run():
        try: fn()
        except Exception as e:
            with lock: errors.append(f"{fn.__name__}: {e}")
    return run

def proc_status():
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, v = line.split(":", 1); fields[k] = (v.split() or [""])[0]
    return (int(fields["VmRSS"]), int(fields["VmHWM"]), int(fields["RssAnon"]), int(fields["RssFile"]),
            int(fields["Threads"]))

def malloc_arenas():
    """glibc malloc arenas: the main one plus each per-thread heap, which glibc maps at a 64 MiB
    boundary as a read-write part followed by the reserved (---p) rest."""
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            maps.append((start, end, parts[1], len(parts) > 5))
    heaps = sum(1 for (s, e, perm, named), nxt in zip(maps, maps[1:])
                if not named and perm.startswith("rw") and s % (64 << 20) == 0 and nxt[0] == e and nxt[2].startswith("---"))
    return 1 + heaps

def file_bytes(name):
    try: return os.path.getsize(os.path.join(state, name))
    except FileNotFoundError: return 0

def rounds():
    with open(log_path, errors="replace") as f:
        text = f.read()
    return text.count("training round queued an update"), text.count("training round failed") + text.count("abandoned")

def pct(xs, p):
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000 if xs else float("nan")

threads = [threading.Thread(target=guarded(ingest)), threading.Thread(target=guarded(recommend))]
for t in threads: t.start()
status_sock = connect()
rows = []
columns = ["t_s", "rss_kb", "hwm_kb", "rss_anon_kb", "rss_file_kb", "fds", "threads", "arenas", "events_total", "events_sent", "rec_requests",
           "rec_p50_ms", "rec_p99_ms", "db_bytes", "wal_bytes", "rounds_queued", "rounds_failed"]
with open(csv_path, "w") as out:
    out.write(",".join(columns) + "\n")
    n = 1
    while True:
        due = start + n * sample
        if due > stop + 0.5: break
        time.sleep(max(0, due - time.monotonic()))
        with lock:
            window = sorted(latencies); latencies.clear(); failed = list(errors)
        if failed: break
        try:
            rss, hwm, anon, file_backed, nthreads = proc_status()
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            arenas = malloc_arenas()
        except FileNotFoundError:
            errors.append("the agent exited"); break
        st, body = request(status_sock, "GET", "/v1/status")
        if st != 200: errors.append(f"GET /v1/status answered {st}"); break
        queued, failed_rounds = rounds()
        row = [round(time.monotonic() - start, 1), rss, hwm, anon, file_backed, fds, nthreads, arenas, json.loads(body)["events_total"],
               sent[0], len(window), round(pct(window, 0.5), 3), round(pct(window, 0.99), 3), file_bytes("hearth.db"), file_bytes("hearth.db-wal"),
               queued, failed_rounds]
        rows.append(row)
        out.write(",".join(str(x) for x in row) + "\n"); out.flush()
        print("  " + "  ".join(f"{c}={v}" for c, v in zip(columns, row)), flush=True)
        n += 1
for t in threads: t.join()
if errors:
    print("soak: FAILED: " + "; ".join(errors)); sys.exit(1)

col = {c: i for i, c in enumerate(columns)}
def values(name, rs=rows): return [r[col[name]] for r in rs]
mean = lambda v: sum(v) / len(v)
mib = lambda kb: kb / 1024

def slope_per_min(rs, name):
    """Least-squares slope of a column against time, per minute (0 with fewer than 2 points)."""
    xs = [r[0] / 60 for r in rs]; ys = [r[col[name]] for r in rs]
    if len(xs) < 2: return 0.0
    mx = mean(xs); my = mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0

def span(v, fmt="{}"):
    lo, hi = min(v), max(v)
    return fmt.format(lo) if lo == hi else fmt.format(lo) + "–" + fmt.format(hi)

# Per-minute timeline (the table docs/reliability.md quotes).
print()
print("| minute | VmRSS mean (min–max) MiB | RssAnon mean MiB | RssFile mean MiB | VmHWM at end MiB | fds | threads | arenas | events_total | rec p50 max ms | rec p99 max ms | db MB | WAL max MB | rounds |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
def minute_of(r):
    """1 for (0, 60] s, 2 for (60, 120] s, ...; the sample just after the end counts in the last minute."""
    return min(int((r[0] - 0.001) // 60) + 1, max(1, math.ceil(minutes)))
for m in sorted({minute_of(r) for r in rows}):
    rs = [r for r in rows if minute_of(r) == m]
    rss = values("rss_kb", rs)
    print(f"| {m} | {mib(mean(rss)):.1f} ({mib(min(rss)):.1f}–{mib(max(rss)):.1f}) | {mib(mean(values('rss_anon_kb', rs))):.1f} | "
          f"{mib(mean(values('rss_file_kb', rs))):.1f} | {mib(rs[-1][col['hwm_kb']]):.1f} | {span(values('fds', rs))} | "
          f"{span(values('threads', rs))} | {span(values('arenas', rs))} | {rs[-1][col['events_total']]:,} | "
          f"{max(values('rec_p50_ms', rs)):.1f} | {max(values('rec_p99_ms', rs)):.0f} | {rs[-1][col['db_bytes']] / 1e6:.2f} | "
          f"{max(values('wal_bytes', rs)) / 1e6:.2f} | {rs[-1][col['rounds_queued']]} |")

# VmHWM after each round: the first sample that shows the round logged.
print()
print("| round | first seen at s | events_total | VmHWM MiB | VmRSS MiB |")
print("|---|---|---|---|---|")
round_rows = {}
for r in rows:
    round_rows.setdefault(r[col["rounds_queued"]], r)
for n in sorted(round_rows):
    if n == 0: continue
    r = round_rows[n]
    print(f"| {n} | {r[0]:.0f} | {r[col['events_total']]:,} | {mib(r[col['hwm_kb']]):.1f} | {mib(r[col['rss_kb']]):.1f} |")
print()

first = [r for r in rows if r[0] <= 60.5]
last = [r for r in rows if r[0] > rows[-1][0] - 60]
settled = [r for r in rows if r[0] > warmup * 60 + 0.5]
fds = values("fds"); ths = values("threads")
summary = {
    "samples": len(rows), "seconds": rows[-1][0],
    "events_total": rows[-1][col["events_total"]], "events_sent": rows[-1][col["events_sent"]],
    "rss_first_minute_mean_kb": round(mean(values("rss_kb", first))),
    "rss_last_minute_mean_kb": round(mean(values("rss_kb", last))),
    "rss_min_kb": min(values("rss_kb")), "rss_max_kb": max(values("rss_kb")),
    "hwm_last_kb": rows[-1][col["hwm_kb"]],
    "fds_first": fds[0], "fds_min": min(fds), "fds_max": max(fds), "fds_last": fds[-1],
    "threads_min": min(ths), "threads_max": max(ths), "arenas_max": max(values("arenas")),
    "rec_p50_ms_median_of_windows": sorted(values("rec_p50_ms"))[len(rows) // 2],
    "rec_p99_ms_max_of_windows": max(values("rec_p99_ms")),
    "db_bytes_first": rows[0][col["db_bytes"]], "db_bytes_last": rows[-1][col["db_bytes"]],
    "wal_bytes_max": max(values("wal_bytes")),
    "rounds_queued": rows[-1][col["rounds_queued"]], "rounds_failed": rows[-1][col["rounds_failed"]],
}

# The verdict (definition in the script's header).
reasons = []
if len(settled) < 2:
    reasons.append(f"fewer than 2 samples after the {warmup:g}-minute warm-up: run longer")
else:
    rss = sorted(values("rss_kb", settled)); median = rss[len(rss) // 2]
    low, high = rss[0], rss[-1]
    within = max(high - median, median - low) / median * 100
    slope = slope_per_min(settled, "rss_kb")
    window_min = (settled[-1][0] - settled[0][0]) / 60
    drift = slope * window_min / median * 100
    summary.update({"rss_after_warmup_median_kb": median, "rss_after_warmup_min_kb": low, "rss_after_warmup_max_kb": high,
                    "rss_after_warmup_band_pct": round(within, 1),
                    "rss_after_warmup_slope_kb_per_min": round(slope, 1), "rss_after_warmup_drift_pct": round(drift, 1)})
    if within > band:
        reasons.append(f"VmRSS after warm-up spans {mib(low):.1f}–{mib(high):.1f} MiB, {within:.1f}% from its median {mib(median):.1f} MiB (band {band:g}%)")
    if drift >= band / 2:
        reasons.append(f"VmRSS after warm-up trends up {slope:.0f} kB/min, {drift:.1f}% of its median over {window_min:.1f} min (limit {band / 2:g}%)")
total_rounds = rows[-1][col["rounds_queued"]]
if total_rounds <= hwm_rounds:
    reasons.append(f"only {total_rounds} rounds: VmHWM cannot be judged over the last {hwm_rounds} (run longer)")
else:
    since = next(r for r in rows if r[col["rounds_queued"]] >= total_rounds - hwm_rounds)
    grew = rows[-1][col["hwm_kb"]] - since[col["hwm_kb"]]
    summary.update({"hwm_at_round_kb": {str(total_rounds - hwm_rounds): since[col["hwm_kb"]]}, "hwm_growth_last_rounds_kb": grew})
    if grew > since[col["hwm_kb"]] * hwm_slack / 100:
        reasons.append(f"VmHWM grew {grew} kB over the last {hwm_rounds} rounds ({mib(since[col['hwm_kb']]):.1f} -> "
                       f"{mib(rows[-1][col['hwm_kb']]):.1f} MiB; slack {hwm_slack:g}%)")
if fds[-1] > fds[0] + fd_slack:
    reasons.append(f"open fds grew from {fds[0]} to {fds[-1]} (slack {fd_slack})")
print("soak summary: " + json.dumps(summary))
if reasons:
    print("soak: verdict: NOT FLAT: " + "; ".join(reasons)); sys.exit(1)
print(f"soak: verdict: FLAT (after a {warmup:g}-minute warm-up: VmRSS within ±{band:g}% of its median and drifting "
      f"less than {band / 2:g}%, VmHWM up at most {hwm_slack:g}% over the last {hwm_rounds} rounds, fds {fds[0]} -> {fds[-1]})")
EOF
echo "soak: timeline in $csv"
