#!/bin/bash
# usage: run.sh config.yaml ; prints spans/CPU-second of sluice
BIN=/work/wt/tail/target/release/sluice
$BIN run --config "$1" > /tmp/tailbench/sluice.log 2>&1 &
PID=$!
for i in $(seq 100); do curl -s 127.0.0.1:24488/metrics >/dev/null && break; sleep 0.1; done
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
T=$(getconf CLK_TCK)
C0=$(cpu)
OUT=$($BIN bench --endpoint 127.0.0.1:24417 --connections 8 --streams 16 --items-per-request 100 --bodies 1024 --duration 10s --json 2>/dev/null | tail -1)
C1=$(cpu)
echo "$OUT"
ITEMS=$(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ok_items"])')
python3 -c "c=($C1-$C0)/$T; print(f'sluice CPU {c:.2f} s, {int($ITEMS)/c/1e6:.3f} M spans per CPU-second')"
curl -s 127.0.0.1:24488/metrics | grep -E "^(otelcol_processor_tail_sampling_(global|sampling_trace_dropped)|sluice_tail_sampling_(routed|ring_full))" 
kill -INT $PID; wait $PID
