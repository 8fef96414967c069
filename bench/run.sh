#!/usr/bin/env bash
# Throughput benchmark: the release archiver against `discord-archiver simulate` running as its
# own process on this machine. Prints one table row per profile; figures are ratios measured in
# one run (achieved requests/s against the simulator's ceiling) and per-message costs: the
# archiver's CPU seconds per 100,000 messages, the writer's and the checkpointer's shares of
# them (SQLite), and the simulator's own CPU over the same run (it shares the two cores).
# After `unthrottled`, examples/sqlite_floor stores that profile's messages again with SQLite
# alone (same order, no archiver around it): the floor under the writer and checkpointer.
#
#   bash bench/run.sh                 # every profile
#   bash bench/run.sh discord unthrottled
#   BENCH_SCALE=0.1 bash bench/run.sh # a quick pass with a tenth of the messages
#   BIN=/tmp/old bash bench/run.sh    # another build of the archiver (and simulator), to compare
#   SIM_BIN=target/release/discord-archiver BIN=/tmp/old bash bench/run.sh skewed
#                                     # an older archiver against this simulator (its presets)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --bin discord-archiver --example sqlite_floor
BIN=${BIN:-target/release/discord-archiver}
SIM_BIN=${SIM_BIN:-$BIN}
TOKEN=bench-token
SCALE=${BENCH_SCALE:-1}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Ticks (1/100 s) the whole machine spent busy: every core, kernel writeback included.
machine_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }

scaled() { python3 -c "import sys; print(max(1, int($1 * $SCALE)))"; }

# name | channels | messages per channel (skewed: in all) | global/s (0 = none) | bucket limit
# (0 = none) | bucket window ms | latency ms | archiver --rate | archiver --concurrency | preset
PROFILES="
discord       64   8000    50  5  5000 40 50   64 uniform
one-channel   1    200000  0   50 1000 40 50   64 uniform
unthrottled   16   100000  0   0  1000 0  1000000 64 uniform
huge          200  25000   0   0  1000 0  1000000 64 uniform
rate-500      64   8000    500 0  1000 40 500  64 uniform
skewed        200  1000000 50  5  5000 40 50   64 skewed
skewed-global 200  1000000 50  50 1000 40 50   64 skewed
"
WANTED="$*"
ROWS=()

run_profile() {
    local name=$1 channels=$2 messages=$3 global=$4 blimit=$5 bwindow=$6 latency=$7 rate=$8 conc=$9 preset=${10}
    messages=$(scaled "$messages")
    local port=$((20000 + RANDOM % 20000))
    local sim_args=(simulate --port "$port" --preset "$preset" --channels "$channels" --messages "$messages"
        --token "$TOKEN" --latency-ms "$latency" --workers 1)
    [ "$global" != 0 ] && sim_args+=(--global-rate "$global")
    [ "$blimit" != 0 ] && sim_args+=(--bucket-limit "$blimit" --bucket-window-ms "$bwindow")
    "$SIM_BIN" "${sim_args[@]}" > "$WORK/sim.out" 2>&1 &
    local sim=$!
    for _ in $(seq 100); do grep -q '^guild' "$WORK/sim.out" && break; sleep 0.1; done
    local guild
    guild=$(grep -o '^guild [0-9]*' "$WORK/sim.out" | cut -d' ' -f2)
    rm -f "$WORK"/a.db*
    local sim_cpu0
    sim_cpu0=$(awk '{print $14 + $15}' "/proc/$sim/stat")
    local busy0
    busy0=$(machine_busy)
    DISCORD_TOKEN=$TOKEN /usr/bin/time -v -o "$WORK/time.txt" "$BIN" -q archive \
        --db "$WORK/a.db" --api-base "http://127.0.0.1:$port" --guild "$guild" \
        --rate "$rate" --concurrency "$conc" --progress off --stats-json "$WORK/stats.json" \
        > "$WORK/archive.out" 2>&1 || { echo "$name: archive failed"; cat "$WORK/archive.out"; }
    local busy=$(( $(machine_busy) - busy0 ))
    local sim_stats
    sim_stats=$(curl -s "http://127.0.0.1:$port/_sim/stats")
    local sim_ticks=$(( $(awk '{print $14 + $15}' "/proc/$sim/stat") - sim_cpu0 ))
    kill "$sim" 2>/dev/null || true
    wait "$sim" 2>/dev/null || true
    if [ "$name" = unthrottled ] && [ -f "$WORK/a.db" ]; then
        # The floor under the writer and checkpointer: SQLite alone storing these rows in the
        # order the fetchers delivered them, then in ID order (nothing interleaved).
        local processed
        processed=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["totals"]["total_processed"])' "$WORK/stats.json")
        FLOOR="$(target/release/examples/sqlite_floor "$WORK/a.db" 4 "$processed")
$(target/release/examples/sqlite_floor "$WORK/a.db" time "$processed")"
        echo "$FLOOR" >&2
    fi
    # The next profile starts on a quiet machine: a 6 GB archive still being written back would
    # stall the next run's processes (and a simulator counting a strict second would see
    # requests delayed together as one burst).
    rm -f "$WORK"/a.db*
    sync
 local row
    row="$(python3 - "$name" "$channels" "$global" "$blimit" "$bwindow" "$WORK/stats.json" "$WORK/time.txt" "$sim_stats" "$sim_ticks" "$busy" <<'PY'
import json, sys
name, channels, glob, blimit, bwindow, stats_path, time_path, sim, sim_ticks, busy = sys.argv[1:11]
sim_cpu = int(sim_ticks) / 100
busy = int(busy) / 100
channels, glob, blimit, bwindow = int(channels), float(glob), float(blimit), float(bwindow)
s = json.load(open(stats_path)); sim = json.loads(sim)
t = s["totals"]; wall = s["elapsed_seconds"]
requests = t["requests"] + s["discovery_requests"]
msgs = t["total_processed"]
ceilings = []
if glob > 0: ceilings.append(glob)
if blimit > 0: ceilings.append(channels * blimit / (bwindow / 1000))
ceiling = min(ceilings) if ceilings else None
if ceiling and blimit > 0:
    # The largest channel cannot go faster than its own bucket: the run takes at least that
    # channel's requests at the bucket's rate, so the ceiling is lower for a skewed guild.
    largest = max((c["requests"] for c in s["channels"].values()), default=0)
    least_wall = max(requests / ceiling, largest / (blimit / (bwindow / 1000)))
    ceiling = requests / least_wall if least_wall > 0 else ceiling
rss = s["process"]["peak_rss_bytes"] / 2**20 if s.get("process") else float("nan")
cpu = s["process"]["cpu_seconds"] if s.get("process") else float("nan")
writer = (s.get("process") or {}).get("writer_cpu_seconds") or float("nan")
ckpt = (s.get("process") or {}).get("checkpointer_cpu_seconds") or float("nan")
rps = requests / wall
eff = f"{rps / ceiling:.3f}" if ceiling else "-"
print(f"{name:<12} {msgs:>9} {wall:>8.1f} {msgs / wall:>10.0f} {rps:>8.1f} {ceiling or float('nan'):>8.1f} {eff:>6} "
      f"{sim['rate_limited_caused']:>6} {t['errors']:>7} {rss:>8.1f} {cpu / max(msgs, 1) * 1e5:>10.2f} "
      f"{writer / max(msgs, 1) * 1e5:>10.2f} {ckpt / max(msgs, 1) * 1e5:>9.2f} {sim_cpu / max(msgs, 1) * 1e5:>8.2f} "
      f"{busy / max(msgs, 1) * 1e5:>9.2f}")
PY
)"
    ROWS+=("$row")
    echo "$row" >&2
}

while read -r line; do
    [ -z "$line" ] && continue
    set -- $line
    if [ -n "$WANTED" ] && [[ " $WANTED " != *" $1 "* ]]; then continue; fi
    echo "running $1..." >&2
    run_profile "$@"
done <<< "$PROFILES"

echo "$(date -u +%Y-%m-%d), $(nproc) cores, BENCH_SCALE=$SCALE"
printf '%-12s %9s %8s %10s %8s %8s %6s %6s %7s %8s %10s %10s %9s %8s %9s\n' profile messages wall_s msgs_per_s req_per_s ceiling effic 429s retries rss_mb cpu_s/100k writer/100k ckpt/100k sim/100k cores@100k
for r in "${ROWS[@]}"; do echo "$r"; done
# cores@100k: the whole machine's busy CPU seconds per 100,000 messages during the run (archiver,
# simulator, kernel writeback): the cores 100,000 messages/s would take.
[ -n "${FLOOR:-}" ] && echo "$FLOOR"
true
