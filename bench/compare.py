#!/usr/bin/env python3
"""The bookkeeping half of bench/compare.sh, which runs the servers and the load.

  compare.py record ROWS.jsonl KEY=VALUE...   parse one load run's output into a result row,
                                              append it to ROWS.jsonl, print a progress line
  compare.py report ROWS.jsonl OUT.json KEY=VALUE...
                                              print the markdown tables (KEY=VALUE: the header),
                                              write every row and the header to OUT.json;
                                              exit 1 if any row failed

A row's KEY=VALUEs come from the shell: table, group, server, parser (slabd-load, wrk, iperf3
or hold), output (the tool's output file), rc (its exit status), log_line (its last line, for a
failure its output does not explain), cpu_ticks and clk_tck (the server's utime+stime over the
run), wall_s, limit (the row is the load without a proxy), failed (a reason found by the
shell), skipped, and for hold rows connections, rss_before_kb and rss_held_kb. Everything the tables show is derived here, once,
so compare.json holds the same figures as the tables.
"""
import json
import re
import sys

NUMERIC = {"rc", "cpu_ticks", "clk_tck", "wall_s", "rss_before_kb", "rss_held_kb", "connections"}


def parse_slabd_load(path):
    doc = json.load(open(path))
    lat = doc["latency_us"]
    row = {
        "ops": doc["msgs"],
        "rate": doc.get("conns_per_s", doc["msgs_per_s"]),
        "unit": "conns/s" if doc["mode"] == "churn" else "msgs/s",
        "p50_us": lat["p50"] if lat["samples"] else None,
        "p99_us": lat["p99"] if lat["samples"] else None,
        "held": doc["peak_connections"],
    }
    problem = None
    if not doc["passed"]:
        bad = {k: v for k, v in doc["outcomes"].items() if v and k not in ("ok", "refused_cleanly")}
        problem = f"slabd-load: {doc['mismatches']} mismatches, errors {bad}"
    elif doc["outcomes"]["refused_cleanly"]:
        # A refusal is no error to slabd-load, but a benchmark row that lost connections
        # measured something other than what it names.
        problem = f"slabd-load: {doc['outcomes']['refused_cleanly']} connections refused"
    return row, problem


WRK_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 6e7}


def parse_wrk(path):
    text = open(path).read()
    requests = re.search(r"(\d+) requests in", text)
    rate = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if not requests or not rate:
        return {}, "wrk printed no result"
    latency = {p: float(v) * WRK_UNITS_US[u]
               for p, v, u in re.findall(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    row = {"ops": int(requests.group(1)), "rate": float(rate.group(1)), "unit": "req/s",
           "p50_us": latency.get("50"), "p99_us": latency.get("99")}
    problems = []
    errors = re.search(r"Socket errors: (.*)", text)
    if errors:
        problems.append(f"socket errors: {errors.group(1).strip()}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        problems.append(f"{non2xx.group(1)} non-2xx responses")
    return row, "wrk: " + "; ".join(problems) if problems else None


def parse_iperf3(path):
    doc = json.load(open(path))
    if "error" in doc:
        return {}, f"iperf3: {doc['error']}"
    received = doc["end"]["sum_received"]
    return {"ops": received["bytes"], "rate": received["bits_per_second"] / 1e9,
            "unit": "Gbit/s"}, None


PARSERS = {"slabd-load": parse_slabd_load, "hold": parse_slabd_load, "wrk": parse_wrk,
           "iperf3": parse_iperf3}


def derive(row):
    """Adds the figures computed from the measurements; returns a reason when the row failed."""
    try:
        parsed, problem = PARSERS[row["parser"]](row["output"])
    except (OSError, ValueError, KeyError) as e:
        # A tool that failed early often leaves no output; then its last line says why.
        if row.get("rc"):
            return f"{row['parser']} exited with status {row['rc']}: {row.get('log_line')}"
        return f"{row['parser']} output unreadable ({e!r})"
    row.update(parsed)
    if row.get("rc"):
        return f"{row['parser']} exited with status {row['rc']}: {problem or row.get('log_line')}"
    if problem:
        return problem
    if not row["ops"]:
        return f"{row['parser']} completed nothing"
    cpu_s = row["cpu_ticks"] / row["clk_tck"]
    row["cpu_s"] = cpu_s
    row["cpu_util"] = cpu_s / row["wall_s"] if row["wall_s"] else None
    if row["parser"] == "iperf3":
        row["cpu_s_per_gb"] = cpu_s / (row["ops"] / 1e9)
    elif row["parser"] == "hold":
        if row["held"] < row["connections"]:
            return f"only {row['held']} of {row['connections']} connections held"
        row["bytes_per_conn"] = (row["rss_held_kb"] - row["rss_before_kb"]) * 1024 / row["connections"]
    else:
        row["cpu_us_per_op"] = cpu_s * 1e6 / row["ops"]
    return None


def record(rows_path, args):
    row = {}
    for arg in args:
        key, _, value = arg.partition("=")
        row[key] = (int(value) if value.lstrip("-").isdigit() else float(value)) if key in NUMERIC else value
    if "skipped" in row:
        row["status"], row["reason"] = "skipped", row.pop("skipped")
    elif "failed" in row:
        row["status"], row["reason"] = "failed", row.pop("failed")
    else:
        reason = derive(row)
        row["status"], row["reason"] = ("failed", reason) if reason else ("ok", "")
    with open(rows_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    summary = row["reason"] if row["status"] != "ok" else progress_figure(row)
    print(f"compare:   {row['status']}: {summary}", file=sys.stderr)


def progress_figure(row):
    if row["parser"] == "hold":
        return f"{row['bytes_per_conn']:.0f} B per connection"
    if row["parser"] == "iperf3":
        return f"{row['rate']:.2f} Gbit/s, server CPU {row['cpu_util']:.0%}"
    return (f"{row['rate']:,.0f} {row['unit']}, server CPU {row['cpu_us_per_op']:.2f} µs/op, "
            f"{row['cpu_util']:.0%}")


# ---- report -------------------------------------------------------------------------------

def fmt(value, spec):
    return "–" if value is None else format(value, spec)


def ratio(value, best):
    return f" ({value / best:.2f}x)" if value is not None and best else ""


def outcome(row):
    return "ok" if row["status"] == "ok" else f"{row['status']} ({row['reason']})"


def best(rows, key, pick):
    values = [r[key] for r in rows if r["status"] == "ok" and r.get(key) is not None]
    return pick(values) if values else None


def groups(rows):
    order = []
    for r in rows:
        if r["group"] not in order:
            order.append(r["group"])
    return [(g, [r for r in rows if r["group"] == g]) for g in order]


def load_table(rows, group_title, cpu_title, util_title="server CPU"):
    """Throughput against the group's best; CPU per operation against the group's lowest,
    leaving out the rows marked limit (their CPU is another process's, e.g. the backend's)."""
    out = [f"| {group_title} | server | throughput | p50 µs | p99 µs | {cpu_title} | {util_title} |"
           " outcome |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for group, members in groups(rows):
        top = best(members, "rate", max)
        low = best([r for r in members if not r.get("limit")], "cpu_us_per_op", min)
        for r in members:
            ok = r["status"] == "ok"
            cpu = fmt(r.get("cpu_us_per_op"), ".2f") + ("" if r.get("limit") else ratio(r.get("cpu_us_per_op"), low))
            cells = [f"{int(group):,}" if group.isdigit() else group, r["server"],
                     f"{r['rate']:,.0f} {r['unit']}{ratio(r['rate'], top)}" if ok else "–",
                     fmt(r.get("p50_us"), ",.0f") if ok else "–",
                     fmt(r.get("p99_us"), ",.0f") if ok else "–",
                     cpu if ok else "–",
                     fmt(r.get("cpu_util"), ".0%") if ok else "–",
                     outcome(r)]
            out.append("| " + " | ".join(cells) + " |")
    return out


def hold_table(rows):
    low = best(rows, "bytes_per_conn", min)
    out = ["| server | connections held | VmRSS before | VmRSS holding | RSS per connection | outcome |",
           "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        ok = r["status"] == "ok"
        # The smallest delta can be a few bytes or even negative (noise): a ratio to it means
        # nothing, so the others get theirs only when the best is clearly above zero.
        per_conn = (f"{r['bytes_per_conn']:,.0f} B" + (ratio(r["bytes_per_conn"], low) if low and low > 64 else "")
                    if ok else "–")
        cells = [r["server"], f"{r['held']:,}" if ok else "–",
                 f"{r['rss_before_kb'] / 1024:.1f} MiB" if ok else "–",
                 f"{r['rss_held_kb'] / 1024:.1f} MiB" if ok else "–", per_conn, outcome(r)]
        out.append("| " + " | ".join(cells) + " |")
    return out


def bulk_table(rows):
    top = best(rows, "rate", max)
    low = best([r for r in rows if not r.get("limit")], "cpu_s_per_gb", min)
    out = ["| proxy | throughput | proxy CPU s / GB | proxy CPU | outcome |", "|---|---:|---:|---:|---|"]
    for r in rows:
        ok = r["status"] == "ok"
        cpu = fmt(r.get("cpu_s_per_gb"), ".3f") + ("" if r.get("limit") else ratio(r.get("cpu_s_per_gb"), low))
        cells = [r["server"], f"{r['rate']:.2f} Gbit/s{ratio(r['rate'], top)}" if ok else "–",
                 cpu if ok else "–", fmt(r.get("cpu_util"), ".0%") if ok else "–", outcome(r)]
        out.append("| " + " | ".join(cells) + " |")
    return out


TABLES = [
    ("echo", "Echo, one worker thread",
     "Server on core 0, slabd-load on core 1 (except the unpinned-client group). Server CPU: "
     "utime+stime from /proc/PID/stat over the load run, per message (rr) or per connection "
     "(churn); the CPU column is that time over the run's wall time, 100% = the server's core "
     "saturated. Ratios: throughput to the group's best, CPU per op to the group's lowest.",
     lambda rows: load_table(rows, "workload", "server CPU µs / op")),
    ("hold", "Memory per idle connection",
     "slabd-load hold (16 B proof echo, then idle) against the server on core 0; VmRSS from "
     "/proc/PID/status before the run and once every connection is open.",
     hold_table),
    ("growth", "Cost growth with connections: rr 64 B",
     "Server on core 0, slabd-load on core 1; 1,000 connections and more are spread over the "
     "sources 127.0.0.1 and 127.0.0.2. Server CPU over the whole client run (connects included) "
     "per message measured.",
     lambda rows: load_table(rows, "connections", "server CPU µs / msg")),
    ("proxy", "HTTP through a proxy: wrk -t1 -c50, keep-alive",
     "Proxy on core 0; the nginx HTTP backend (one worker, `return 200`) and wrk share core 1. "
     "The `direct` row is wrk straight to the backend: the limit, and its CPU is the backend's "
     "(not compared). Proxy CPU per request, ratio to the lowest proxy.",
     lambda rows: load_table(rows, "workload", "proxy CPU µs / req", "proxy CPU")),
    ("bulk", "Bulk TCP through a proxy: iperf3, one stream",
     "Proxy on core 0; iperf3 server and client both on core 1; the control and the data "
     "connection both pass the proxy. The `direct` row is iperf3 without a proxy (its CPU is the "
     "iperf3 server's, not compared). GB = 10^9 bytes received.",
     bulk_table),
]


def report(rows_path, out_path, args):
    meta = dict(arg.partition("=")[::2] for arg in args)
    rows = [json.loads(line) for line in open(rows_path)]
    json.dump({"meta": meta, "rows": rows}, open(out_path, "w"), indent=1)

    print("# slabd side-by-side benchmark\n")
    for key, value in meta.items():
        print(f"- {key}: {value}")
    for table, title, note, render in TABLES:
        members = [r for r in rows if r["table"] == table]
        if not members:
            continue
        print(f"\n## {title}\n\n{note}\n")
        print("\n".join(render(members)))
    count = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed")}
    print(f"\n{len(rows)} rows: {count['ok']} ok, {count['skipped']} skipped, {count['failed']} failed.")
    return 1 if count["failed"] else 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "record":
        record(argv[2], argv[3:])
        return 0
    if len(argv) >= 4 and argv[1] == "report":
        return report(argv[2], argv[3], argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
