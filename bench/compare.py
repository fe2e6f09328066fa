#!/usr/bin/env python3
"""The bookkeeping half of bench/compare.sh, which runs the servers and the load.

  compare.py record RUNS.jsonl KEY=VALUE...   parse one load run's output into a result,
                                              append it to RUNS.jsonl, print a progress line
  compare.py report RUNS.jsonl OUT.json KEY=VALUE...
                                              print the markdown tables (KEY=VALUE: the header),
                                              write the header, the table rows and every run
                                              to OUT.json; exit 1 if any run failed

A run's KEY=VALUEs come from the shell: table, group, server, parser (slabd-load, wrk, iperf3
or hold), run (its round, from 1), output (the tool's output file), rc (its exit status),
log_line (its last line, for a failure its output does not explain), cpu_ticks and clk_tck (the
server's utime+stime over the run), wall_s, limit (the row is the load without a proxy), failed
(a reason found by the shell), skipped, and for hold rows connections, rss_before_kb and
rss_held_kb. The runs with the same table, group and server make one table row: the median of
each figure, and the spread of the CPU per operation. Everything the tables show is derived
here, once, so compare.json holds the same figures as the tables.
"""
import json
import re
import statistics
import sys

NUMERIC = {"cpu_cap", "run", "rc", "cpu_ticks", "clk_tck", "wall_s", "rss_before_kb", "rss_held_kb", "connections",
           "load_cpu_s"}


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


def parse_epoll_client(path):
    text = open(path).read()
    m = re.search(r"msgs/s ([\d.]+) msgs (\d+) seconds [\d.]+ mismatches (\d+) errors (\d+)", text)
    if not m:
        return {}, "epoll-client printed no result"
    row = {"ops": int(m.group(2)), "rate": float(m.group(1)), "unit": "msgs/s",
           "p50_us": None, "p99_us": None}
    problem = None
    if int(m.group(3)) or int(m.group(4)):
        problem = f"epoll-client: {m.group(3)} mismatches, {m.group(4)} errors"
    return row, problem


PARSERS = {"slabd-load": parse_slabd_load, "hold": parse_slabd_load, "wrk": parse_wrk,
           "iperf3": parse_iperf3, "epoll-client": parse_epoll_client}

# A server whose CPU over the run stays under this share of its core was not the limit: the
# load (or the rest of the machine) was, and its row says less about the server than it seems.
SATURATED = 0.90


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
    # A server held to a CPU quota is saturated when it uses all of it.
    row["cpu_util"] = cpu_s / row["wall_s"] / row.get("cpu_cap", 1) if row["wall_s"] else None
    if row["parser"] == "iperf3":
        row["cpu_s_per_gb"] = cpu_s / (row["ops"] / 1e9)
    elif row["parser"] == "hold":
        if row["held"] < row["connections"]:
            return f"only {row['held']} of {row['connections']} connections held"
        row["bytes_per_conn"] = (row["rss_held_kb"] - row["rss_before_kb"]) * 1024 / row["connections"]
    else:
        row["cpu_us_per_op"] = cpu_s * 1e6 / row["ops"]
        if row.get("load_cpu_s") is not None:
            # The load's whole run (connects and its end included) over the messages it counted.
            row["load_us_per_op"] = row["load_cpu_s"] * 1e6 / row["ops"]
    return None


def record(runs_path, args):
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
    with open(runs_path, "a") as f:
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

MEDIANS = ("rate", "p50_us", "p99_us", "cpu_util", "cpu_us_per_op", "cpu_s_per_gb", "held",
           "rss_before_kb", "rss_held_kb", "bytes_per_conn", "load_us_per_op")
SPREADS = ("cpu_us_per_op", "cpu_s_per_gb")


def combine(runs):
    """One table row from its runs. Strict: a single failed run fails the row, since medians of
    the rest would hide that one server cannot always complete the load."""
    first = runs[0]
    row = {k: first[k] for k in ("table", "group", "server", "parser", "limit", "unit", "cpu_cap")
           if k in first}
    row["runs"] = len(runs)
    failed = [r for r in runs if r["status"] == "failed"]
    if failed:
        row["status"] = "failed"
        row["reason"] = "; ".join(r["reason"] if len(runs) == 1 else f"run {r['run']}: {r['reason']}"
                                  for r in failed)
        return row
    row["status"], row["reason"] = first["status"], first["reason"]
    for key in MEDIANS:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            row[key] = statistics.median(values)
    for key in SPREADS:
        if key in row:
            row[key + "_min"] = min(r[key] for r in runs)
            row[key + "_max"] = max(r[key] for r in runs)
    return row


def table_rows(runs):
    keys = {}
    for r in runs:
        keys.setdefault((r["table"], r["group"], r["server"]), []).append(r)
    return [combine(members) for members in keys.values()]


def fmt(value, spec):
    return "–" if value is None else format(value, spec)


def spread(row, key, spec):
    return f"{row[key + '_min']:{spec}}–{row[key + '_max']:{spec}}"


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


def saturated(row):
    """Whether the server's core was the limit (the median CPU over the run's wall time)."""
    util = row.get("cpu_util")
    if row["status"] != "ok" or row.get("limit") or util is None:
        return "–"
    return "yes" if util >= SATURATED else f"**no** (under {SATURATED:.0%})"


def util(row):
    """The server's CPU over the run's wall time; of its quota, when it had one."""
    cap = row.get("cpu_cap")
    return fmt(row.get("cpu_util"), ".0%") + (f" of its {cap:.0%} quota" if cap else "")


def load_table(rows, group_title, cpu_title, util_title="server CPU"):
    """Throughput against the group's best; CPU per operation against the group's lowest,
    leaving out the rows marked limit (their CPU is another process's, e.g. the backend's)."""
    out = [f"| {group_title} | server | throughput | p50 µs | p99 µs | {cpu_title} | CPU min–max |"
           f" {util_title} | saturated | outcome |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
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
                     spread(r, "cpu_us_per_op", ".2f") if ok else "–",
                     util(r) if ok else "–",
                     saturated(r),
                     outcome(r)]
            out.append("| " + " | ".join(cells) + " |")
    return out


# slabd-load is held to this share of the C epoll client's rate.
CLIENT_TARGET = 0.95


def client_ratios(rows, runs):
    """Adds to each slabd-load row of the client table the ratio of its rate to the C client's:
    per round (both ran against the same server process), then the median and the spread."""
    for row in rows:
        if row["table"] != "client" or row["server"] != "slabd-load" or row["status"] != "ok":
            continue
        ratios = []
        for r in runs:
            if (r["table"], r["group"], r["server"]) != ("client", row["group"], "slabd-load"):
                continue
            ref = next((c for c in runs if c["table"] == "client" and c["group"] == row["group"]
                        and c["server"] == "epoll-client" and c["run"] == r["run"]), None)
            if ref and ref["status"] == "ok" and r["status"] == "ok" and ref["rate"]:
                ratios.append(r["rate"] / ref["rate"])
        if ratios:
            row["rate_ratio"] = statistics.median(ratios)
            row["rate_ratio_min"], row["rate_ratio_max"] = min(ratios), max(ratios)


def client_table(rows):
    out = ["| workload | client | throughput | rate / epoll-client | ratio min–max | client CPU µs / msg |"
           " server CPU µs / msg | server CPU | saturated | outcome |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for group, members in groups(rows):
        ref = next((r for r in members if r["server"] == "epoll-client" and r["status"] == "ok"), {})
        for r in members:
            ok = r["status"] == "ok"
            ratio_cell = spread_cell = "–"
            if r.get("rate_ratio") is not None:
                flag = "" if r["rate_ratio"] >= CLIENT_TARGET else f" **under {CLIENT_TARGET}**"
                ratio_cell = f"{r['rate_ratio']:.2f}x{flag}"
                spread_cell = spread(r, "rate_ratio", ".2f")
            elif r["server"] == "epoll-client" and ok:
                ratio_cell = "1.00x"
            load = fmt(r.get("load_us_per_op"), ".2f") + ratio(r.get("load_us_per_op"), ref.get("load_us_per_op"))
            cells = [group, r["server"], f"{r['rate']:,.0f} {r['unit']}" if ok else "–", ratio_cell,
                     spread_cell, load if ok else "–", fmt(r.get("cpu_us_per_op"), ".2f") if ok else "–",
                     fmt(r.get("cpu_util"), ".0%") if ok else "–", saturated(r), outcome(r)]
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
    out = ["| proxy | throughput | proxy CPU s / GB | CPU min–max | proxy CPU | outcome |",
           "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        ok = r["status"] == "ok"
        cpu = fmt(r.get("cpu_s_per_gb"), ".3f") + ("" if r.get("limit") else ratio(r.get("cpu_s_per_gb"), low))
        cells = [r["server"], f"{r['rate']:.2f} Gbit/s{ratio(r['rate'], top)}" if ok else "–",
                 cpu if ok else "–", spread(r, "cpu_s_per_gb", ".3f") if ok else "–",
                 fmt(r.get("cpu_util"), ".0%") if ok else "–", outcome(r)]
        out.append("| " + " | ".join(cells) + " |")
    return out


TABLES = [
    ("echo", "Echo, one worker thread",
     "Server on core 0, slabd-load on core 1 (except the unpinned-client group). Server CPU: "
     "utime+stime from /proc/PID/stat over the load run, per message (rr) or per connection "
     "(churn); the CPU column is that time over the run's wall time, 100% = the server's core "
     "saturated (the saturated column flags a row under 90%: its load was the limit). Ratios: "
     "throughput to the group's best, CPU per op to the group's lowest.",
     lambda rows: load_table(rows, "workload", "server CPU µs / op")),
    ("client", "The load client against a minimal C epoll client",
     "slabd-load and bench/peers/epoll_client.c (one level-triggered epoll loop per thread, every "
     "echoed byte checked) in turn against the same server process on core 0, both on core 1 with "
     "the same threads and 100 connections. Rate / epoll-client: the median over the rounds of "
     "slabd-load's rate over the C client's in the same round; the target is 0.95x or more. A "
     "server that is not saturated leaves the clients as the limit, which is what this table "
     "compares. Client CPU: the client process's user+system time over its whole run per message "
     "counted, in brackets against the C client's; less noisy than the rate on a shared machine.",
     client_table),
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
     "(not compared). `+pp2`: the proxy sends each backend connection a PROXY protocol v2 header "
     "(slabd `send_proxy = \"v2\"`, HAProxy `send-proxy-v2`), to a listener of the same nginx "
     "with `proxy_protocol`. Proxy CPU per request, ratio to the lowest proxy.",
     lambda rows: load_table(rows, "workload", "proxy CPU µs / req", "proxy CPU")),
    ("bulk", "Bulk TCP through a proxy: iperf3, one stream",
     "Proxy on core 0; iperf3 server and client both on core 1; the control and the data "
     "connection both pass the proxy. The `direct` row is iperf3 without a proxy (its CPU is the "
     "iperf3 server's, not compared). GB = 10^9 bytes received.",
     bulk_table),
]


def runs_note(rows):
    n = max(r["runs"] for r in rows)
    if n == 1:
        return "One run per row."
    return (f"Every figure is the median of {n} runs, each column's taken on its own, so one row's "
            "figures may come from different runs; the ratios are those of the medians. The runs "
            "are interleaved: round by round, every server of the group runs once. CPU min–max: "
            "the lowest and highest CPU per operation of the runs. A row with a failed run is "
            "failed.")


def report(runs_path, out_path, args):
    meta = dict(arg.partition("=")[::2] for arg in args)
    runs = [json.loads(line) for line in open(runs_path)]
    rows = table_rows(runs)
    client_ratios(rows, runs)
    json.dump({"meta": meta, "rows": rows, "runs": runs}, open(out_path, "w"), indent=1)

    print("# slabd side-by-side benchmark\n")
    for key, value in meta.items():
        print(f"- {key}: {value}")
    for table, title, note, render in TABLES:
        members = [r for r in rows if r["table"] == table]
        if not members:
            continue
        print(f"\n## {title}\n\n{note} {runs_note(members)}\n")
        print("\n".join(render(members)))
    count = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed")}
    failed_runs = sum(r["status"] == "failed" for r in runs)
    print(f"\n{len(rows)} rows: {count['ok']} ok, {count['skipped']} skipped, {count['failed']} failed"
          f" ({len(runs)} runs, {failed_runs} failed).")
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
