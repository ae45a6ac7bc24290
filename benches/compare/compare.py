#!/usr/bin/env python3
"""Side-by-side OTLP ingest comparison: sluice vs Rotel, each pinned to the same core.

The collector under test runs on CPU 1; the load (`sluice bench`, 16 connections x 64
streams, 100-item requests by default) runs on CPU 0, and so does the sink of the
forwarding scenario (a second sluice with a nop exporter, the same sink for both peers).
For every run it reads the collector's utime+stime from /proc/PID/stat before and after,
and its peak RSS (VmHWM), and reports items/s, items per collector CPU-second, and the
ratio sluice/Rotel of the medians.

Two independent load generators drive every scenario: `sluice bench` (16 KiB DATA frames, as gRPC
clients send) and h2load from nghttp2-client (16 KiB DATA frames, nghttp2's default), posting the
workload's first request (written by `sluice bench --write-request`). h2load counts HTTP statuses and a
gRPC error travels in a 200's trailers, so for sluice the items counted are its own
`otelcol_receiver_accepted_*` counters; for Rotel, h2load's 2xx (Rotel refuses nothing here).

usage: benches/compare/compare.py [--runs 3] [--duration 10s] [--scenarios ingest,forward,...]
                                  [--loads sluice-bench,h2load]
Scenarios: ingest (traces), forward (traces), ingest-logs, ingest-metrics, sluice-2shards, pipeline
(sluice only: memory_limiter, filter with 2 conditions, resource with 2 actions, attributes with 1
upsert, batch -> nop; Rotel has no such processors, its plain ingest row is the reference),
forward-lb (traces through a `loadbalancing` exporter to 3 sinks; sluice only: Rotel has no
trace-aware load balancer), tail-2shards (sluice only: tail_sampling with the errors / slow / 10%
policies, batch -> nop, two shards on CPUs 0-1 sharing them with the load, as sluice-2shards),
forward-kafka (traces through the `kafka` exporter, acks=1, lz4, to a
tansu broker on CPU 0 with in-memory storage; sluice only; needs `--features kafka` and tansu:
`.ci/run` installs an unoptimised build under target/tools, which limits this scenario; for figures,
point SLUICE_TANSU at a release build: `cargo install --locked --root target/tansu-release tansu
--version 0.6.0 --features dynostore,libsql`).
Rotel 0.0.1a15 is installed from PyPI into target/compare/rotel-py on first use.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The sluice binary measured: target/release/sluice (built if missing), or
# $SLUICE_BIN (to compare two builds: run once with each).
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "target", "release", "sluice"))
ROTEL_DIR = os.path.join(ROOT, "target", "compare", "rotel-py")
ROTEL = os.path.join(ROTEL_DIR, "rotel", "rotel-agent")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"collector exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


PIPELINE_PROCESSORS = """
  memory_limiter: {check_interval: 1s, limit_mib: 512}
  filter:
    traces:
      span:
        - 'IsMatch(name, "^(health_check|readiness_probe)$")'
        - 'attributes["http.route"] == "/metrics"'
  resource:
    attributes:
      - {key: deployment.environment, value: production, action: upsert}
      - {key: cloud.region, value: eu-west-1, action: insert}
  attributes:
    actions:
      - {key: ingest.node, value: sluice-1, action: upsert}"""


TAIL_PROCESSORS = """
  tail_sampling:
    decision_wait: 2s
    num_traces: 200000
    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
      - {name: slow, type: latency, latency: {threshold_ms: 2000}}
      - {name: rest, type: probabilistic, probabilistic: {sampling_percentage: 10}}"""


def sluice_config(grpc, http, metrics, exporter, shards=1, pipeline=False):
    """`pipeline`: False (batch only), True (the processing pipeline) or "tail" (tail_sampling, batch)."""
    if isinstance(exporter, str):
        # forward-kafka: `exporter` is the broker's address.
        exp = (f"kafka:\n    brokers: [{exporter}]\n    producer: {{required_acks: 1, compression: lz4}}\n"
               "    sending_queue: {num_consumers: 4, queue_size: 8}")
    elif isinstance(exporter, list):
        # forward-lb: by trace id over the sinks, each with its own queue and connection.
        hosts = ", ".join(f"127.0.0.1:{p}" for p in exporter)
        exp = ("loadbalancing:\n    protocol:\n      otlp:\n        tls: {insecure: true}\n        compression: none\n"
               "        sending_queue: {num_consumers: 4, queue_size: 8}\n"
               f"    resolver: {{static: {{hostnames: [{hosts}]}}}}")
    else:
        exp = "nop:" if exporter is None else (
            f"otlp:\n    endpoint: 127.0.0.1:{exporter}\n    tls: {{insecure: true}}\n    compression: none\n"
            "    sending_queue: {num_consumers: 4, queue_size: 8}")
    name = ("nop" if exporter is None else "loadbalancing" if isinstance(exporter, list)
            else "kafka" if isinstance(exporter, str) else "otlp")
    # Forwarding: smaller batches and a short queue bound the memory held for a
    # sink that cannot keep up (the peak RSS target is 64 MiB).
    batch = "{}" if exporter is None else "{send_batch_size: 2048, send_batch_max_size: 4096}"
    return f"""receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
processors:
  batch: {batch}{TAIL_PROCESSORS if pipeline == "tail" else PIPELINE_PROCESSORS if pipeline else ""}
exporters:
  {exp}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [{"tail_sampling, " if pipeline == "tail" else "memory_limiter, filter, resource, attributes, " if pipeline else ""}batch], exporters: [{name}]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [{name}]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [{name}]}}
tuning: {{shards: {shards}}}
"""


def start_sluice(tmp, name, cpus, grpc, http, metrics, exporter=None, shards=1, pipeline=False):
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(sluice_config(grpc, http, metrics, exporter, shards, pipeline))
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    proc = subprocess.Popen(["taskset", "-c", cpus, SLUICE, "run", "--config", path],
                            stdout=log, stderr=log, env=dict(os.environ, SLUICE_LOG="warn"))
    wait_port(grpc, proc)
    return proc


def ensure_rotel():
    if not os.path.exists(ROTEL):
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", ROTEL_DIR,
                               "rotel==0.0.1a15"])


def start_rotel(tmp, cpu, grpc, http, exporter=None):
    ensure_rotel()
    args = ["taskset", "-c", cpu, ROTEL, "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}",
            "--otlp-http-endpoint", f"127.0.0.1:{http}", "--log-file", os.path.join(tmp, f"rotel-{grpc}.log"),
            "--pid-file", os.path.join(tmp, f"rotel-{grpc}.pid")]
    if exporter is None:
        args += ["--exporter", "blackhole"]
    else:
        args += ["--exporter", "otlp", "--otlp-exporter-endpoint", f"http://127.0.0.1:{exporter}"]
    log = os.path.join(tmp, f"rotel-{grpc}.out")
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out)
    try:
        wait_port(grpc, proc)
    except RuntimeError:
        with open(log) as f:
            sys.stderr.write(f.read())
        raise
    return proc


TANSU = os.environ.get("SLUICE_TANSU", os.path.join(ROOT, "target", "tools", "bin", "tansu"))


def start_tansu(tmp, cpu, port):
    """A tansu broker with in-memory storage and the traces topic (8 partitions)."""
    url = f"tcp://127.0.0.1:{port}"
    log = open(os.path.join(tmp, f"tansu-{port}.log"), "w")
    proc = subprocess.Popen(["taskset", "-c", cpu, TANSU, "broker", "--listener-url", url,
                             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                            cwd=tmp, stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="warn"))
    wait_port(port, proc)
    subprocess.run([TANSU, "topic", "create", "otlp_spans", "--broker", url, "--partitions", "8"],
                   check=True, capture_output=True)
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load(port, signal_name, args, cpus="0", fresh_trace_ids=False):
    out = subprocess.run(["taskset", "-c", cpus, SLUICE, "bench", "--endpoint", f"127.0.0.1:{port}",
                          "--signal", signal_name, "--connections", str(args.connections), "--streams",
                          str(args.streams), "--items-per-request", str(args.items), "--duration", args.duration,
                          "--frame-size", str(args.frame_size), "--cpus", cpus, "--json"]
                         + (["--fresh-trace-ids"] if fresh_trace_ids else []),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


GRPC_PATHS = {"traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
              "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
              "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export"}
ACCEPTED = {"traces": "otelcol_receiver_accepted_spans", "metrics": "otelcol_receiver_accepted_metric_points",
            "logs": "otelcol_receiver_accepted_log_records"}


def request_file(tmp, signal_name, items):
    path = os.path.join(tmp, f"{signal_name}_{items}.grpc")
    if not os.path.exists(path):
        subprocess.run([SLUICE, "bench", "--signal", signal_name, "--items-per-request", str(items),
                        "--write-request", path], check=True, capture_output=True)
    return path


def accepted(metrics_port, signal_name):
    """The collector's own count of accepted items (sluice), from its Prometheus endpoint."""
    import urllib.request
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(ACCEPTED[signal_name]) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ensure_h2load():
    """h2load comes from Debian's nghttp2-client, which a fresh machine lacks."""
    if shutil.which("h2load") is None:
        install = ["apt-get", "install", "-y", "-qq", "nghttp2-client"]
        if subprocess.run(install, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.check_call(["apt-get", "update", "-qq"])
            subprocess.check_call(install, stdout=subprocess.DEVNULL)


def h2load(port, signal_name, args, tmp, cpus="0"):
    ensure_h2load()
    body = request_file(tmp, signal_name, args.items)
    out = subprocess.run(["taskset", "-c", cpus, "h2load", "-D", args.duration, "-c", str(args.connections),
                          "-m", str(args.streams), "-t", "1", "-d", body, "-H", "content-type: application/grpc",
                          "-H", "te: trailers", f"http://127.0.0.1:{port}{GRPC_PATHS[signal_name]}"],
                         capture_output=True, text=True, check=True).stdout
    ok = failed = 0
    for line in out.splitlines():
        if line.startswith("status codes:"):
            ok = int(line.split()[2])
        if line.startswith("requests:"):
            parts = line.replace(",", "").split()
            failed = int(parts[parts.index("failed") - 1])
    # Rates are computed by the caller from the wall time it measured.
    return {"ok_items": ok * args.items, "failed_requests": failed, "p99_us": 0}


# Scenarios that route by trace id: `sluice bench` gives every request trace ids
# of its own (as live traffic); h2load, which repeats one request body (the same
# 13 traces forever), is not run for these.
FRESH_TRACES = ("tail-2shards", "forward-lb")


def measure(tmp, peer, scenario, loadgen, args):
    """One run of one scenario against one peer under one load generator; returns a result dict."""
    sig = {"ingest-logs": "logs", "ingest-metrics": "metrics"}.get(scenario, "traces")
    sinks = []
    forward = scenario == "forward"
    # Fresh ports every run: a stopped peer leaves TIME_WAIT sockets behind.
    grpc, http, metrics, sink_port = free_port(), free_port(), free_port(), None
    if forward:
        sink_port = free_port()
        sinks.append(start_sluice(tmp, "sink", "0", sink_port, free_port(), free_port()))
    if scenario == "forward-kafka":
        port = free_port()
        sinks.append(start_tansu(tmp, "0", port))
        sink_port = f"127.0.0.1:{port}"
    if scenario == "forward-lb":
        sink_port = [free_port() for _ in range(3)]
        for i, port in enumerate(sink_port):
            sinks.append(start_sluice(tmp, f"sink{i}", "0", port, free_port(), free_port()))
    try:
        if peer == "sluice":
            shards = 2 if scenario in ("sluice-2shards", "tail-2shards") else 1
            cpus = "0,1" if shards == 2 else "1"
            proc = start_sluice(tmp, "sluice", cpus, grpc, http, metrics, sink_port, shards,
                                pipeline="tail" if scenario == "tail-2shards" else scenario == "pipeline")
        else:
            proc = start_rotel(tmp, "1", grpc, http, sink_port)
        try:
            time.sleep(0.3)
            c0, t0 = cpu_seconds(proc.pid), time.time()
            cpus = "0,1" if scenario in ("sluice-2shards", "tail-2shards") else "0"
            if loadgen == "h2load":
                res = h2load(grpc, sig, args, tmp, cpus)
            else:
                res = load(grpc, sig, args, cpus, fresh_trace_ids=scenario in FRESH_TRACES)
            wall = time.time() - t0
            time.sleep(0.5)
            cpu = cpu_seconds(proc.pid) - c0
            rss = peak_rss_mib(proc.pid)
            if peer == "sluice":
                # The collector's own count: what it accepted, not what the client saw.
                counted = accepted(metrics, sig)
                if counted is not None:
                    res["ok_items"] = counted
        finally:
            stop(proc)
    finally:
        for sink in sinks:
            stop(sink)
    items = res["ok_items"]
    return {"peer": peer, "scenario": scenario, "load": loadgen, "items_per_s": items / wall,
            "items_per_cpu_s": items / cpu if cpu > 0 else 0.0, "cpu_s": cpu, "wall_s": wall,
            "peak_rss_mib": rss, "failed": res["failed_requests"], "p99_ms": res["p99_us"] / 1000}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--frame-size", type=int, default=16384)
    ap.add_argument("--loads", default="sluice-bench,h2load")
    ap.add_argument("--scenarios", default="ingest,forward,ingest-logs,ingest-metrics,sluice-2shards,pipeline")
    ap.add_argument("--peers", default="sluice,rotel")
    args = ap.parse_args()
    if "forward-kafka" in args.scenarios.split(","):
        subprocess.check_call(["cargo", "build", "--release", "--features", "kafka"], cwd=ROOT)
    elif not os.path.exists(SLUICE):
        subprocess.check_call(["cargo", "build", "--release"], cwd=ROOT)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scenario, loadgen in [(s, g) for s in args.scenarios.split(",") for g in args.loads.split(",")
                                  if not (g == "h2load" and s in FRESH_TRACES)]:
            peers = ["sluice"] if scenario in ("sluice-2shards", "tail-2shards", "pipeline", "forward-lb",
                                               "forward-kafka") else args.peers.split(",")
            for peer in peers:
                runs = []
                for _ in range(args.runs):
                    r = measure(tmp, peer, scenario, loadgen, args)
                    print(f"  {scenario:<15} {loadgen:<12} {peer:<7} {r['items_per_s']:>12.0f}/s "
                          f"{r['items_per_cpu_s']:>12.0f}/cpu-s "
                          f"cpu {r['cpu_s']:.2f}s wall {r['wall_s']:.2f}s rss {r['peak_rss_mib']:.0f} MiB "
                          f"p99 {r['p99_ms']:.1f} ms failed {r['failed']}", file=sys.stderr)
                    runs.append(r)
                rows.append({"scenario": scenario, "load": loadgen, "peer": peer,
                             "items_per_s": statistics.median(r["items_per_s"] for r in runs),
                             "items_per_cpu_s": statistics.median(r["items_per_cpu_s"] for r in runs),
                             "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                             "failed": sum(r["failed"] for r in runs)})
    print("| scenario | load | peer | items/s (median) | items per CPU-s (median) | peak RSS MiB | failed "
          "| ratio per CPU-s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        ref = "ingest" if row["scenario"] in ("pipeline", "tail-2shards") else row["scenario"]
        base = [r for r in rows if r["scenario"] == ref and r["load"] == row["load"] and r["peer"] == "rotel"]
        ratio = ""
        if row["peer"] == "sluice" and base and base[0]["items_per_cpu_s"] > 0:
            ratio = f"{row['items_per_cpu_s'] / base[0]['items_per_cpu_s']:.1f}x"
        print(f"| {row['scenario']} | {row['load']} | {row['peer']} | {row['items_per_s']:.0f} | {row['items_per_cpu_s']:.0f} | "
              f"{row['peak_rss_mib']:.0f} | {row['failed']} | {ratio} |")


if __name__ == "__main__":
    main()
