#!/usr/bin/env python3
"""The cycle benchmark: scanwatch's `poll` against the simulator at scale.

Starts `scanwatch simulate` with N customers of M profiles each and a fixed
latency on every API response, then runs `scanwatch poll` over all of them,
each run a separate process whose own resource usage (wait4) is read:

  baseline   the first poll of every customer (the whole history is written)
  unchanged  the same lists again: what a watcher costs on a quiet day
  changed    after the simulator changed a fraction of all profiles

with `unchanged` and `changed` repeated for --rounds rounds (3 by default;
each figure is the median over the rounds, since CPU time on a machine
shared with the simulator varies by several percent from run to run), and
one poll of a single customer after the baseline, which is the fixed cost
of a run (process start, the `PRAGMA quick_check` of the whole database,
migrations). The marginal CPU of an unchanged poll is
(unchanged CPU - fixed CPU) / (N - 1); the raw figure, unchanged CPU / N,
is printed beside it. The CPU per changed profile is
(changed CPU - CPU of the unchanged cycle before it) / changes.

The bound a cycle is measured against is what the API allows:
customers x latency / max_concurrency (no request-rate cap is set).

Prints a table; exits 1 when a target is missed (unless --smoke, which only
checks that every step works), 2 on a usage error. Standard library only.
"""

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from statistics import median

# The targets of the benchmark (see BENCHMARKS.md).
MAX_WALL_RATIO = 1.1
MAX_CPU_PER_UNCHANGED_POLL_US = 250
MAX_CPU_PER_CHANGED_PROFILE_US = 100
MAX_BYTES_PER_UNCHANGED_POLL = 250
MAX_PEAK_RSS_MB = 40


def duration(text):
    """Seconds in a humantime-like string: 50ms, 1.5s, 2m, 0."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s|m)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 50ms")
    value = float(match.group(1))
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    return value * scale


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default="target/release/scanwatch")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--profiles", type=int, default=20)
    parser.add_argument("--latency", type=duration, default=0.05)
    parser.add_argument(
        "--latency-jitter", type=duration, default=0.0,
        help="a uniform random extra of up to this much on every response",
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--changed", type=float, default=0.01, help="fraction of profiles changed"
    )
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="unchanged and changed cycles to run; the targets use their medians",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="check that it works, not the targets"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.customers < 2 or args.profiles < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error(
            "--customers must be at least 2, --profiles, --concurrency and --rounds 1"
        )
    return args


class Simulator:
    """`scanwatch simulate` as a child process."""

    def __init__(self, binary, workdir, args):
        self.log = open(os.path.join(workdir, "simulate.log"), "wb")
        latency_ms = f"{round(args.latency * 1000)}ms"
        self.process = subprocess.Popen(
            [
                binary, "simulate", "--listen", "127.0.0.1:0",
                "--customers", str(args.customers), "--profiles", str(args.profiles),
                "--latency", latency_ms,
                "--latency-jitter", f"{round(args.latency_jitter * 1000)}ms",
                "--seed", "1",
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        lines = []
        for raw in self.process.stdout:
            line = raw.decode()
            if line.startswith("# Control"):
                break
            lines.append(line)
        else:
            raise SystemExit("simulate ended before printing its config; see simulate.log")
        self.config = "".join(lines)
        self.base_url = re.search(r'^base_url = "([^"]+)"', self.config, re.M).group(1)
        self.customer_ids = re.findall(r'^id = "([^"]+)"', self.config, re.M)

    def get(self, path):
        with urllib.request.urlopen(self.base_url + path, timeout=60) as response:
            return json.load(response)

    def command(self, command):
        request = urllib.request.Request(
            self.base_url + "/_sim/commands",
            data=json.dumps(command).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    def requests(self):
        counters = self.get("/_sim/counters")["counters"]
        return counters["api_requests"] + counters["token_requests"]

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except Exception:
            self.process.kill()
            self.process.wait()
        self.log.close()


def run_poll(binary, config, log_path, extra=()):
    """Runs `scanwatch poll`; returns its exit code, wall seconds and rusage."""
    argv = [binary, "--config", config, "poll", *extra]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
    ]
    started = time.monotonic()
    pid = os.posix_spawn(binary, argv, os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    return os.waitstatus_to_exitcode(status), wall, usage


def database_bytes(db):
    return sum(
        os.path.getsize(path) for path in (db, db + "-wal") if os.path.exists(path)
    )


def query(db, sql, *params):
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return connection.execute(sql, params).fetchone()
    finally:
        connection.close()


def last_poll_id(db):
    return query(db, "SELECT coalesce(max(poll_id), 0) FROM polls")[0]


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, {model}; load average {load}"


class Cycle:
    """One measured `scanwatch poll` run."""

    def __init__(
        self, name, code, wall, usage, polls, ok, changes, grown, sim_cpu, requests, span
    ):
        self.name, self.code, self.wall, self.span = name, code, wall, span
        self.cpu = usage.ru_utime + usage.ru_stime
        self.user, self.sys = usage.ru_utime, usage.ru_stime
        self.rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
        self.polls, self.ok, self.changes, self.grown = polls, ok, changes, grown
        self.sim_cpu, self.requests = sim_cpu, requests


def measure(name, sim, binary, config, db, log, extra=()):
    before_id = last_poll_id(db) if os.path.exists(db) else 0
    size_before = database_bytes(db) if os.path.exists(db) else 0
    sim_cpu, requests = sim.cpu_seconds(), sim.requests()
    code, wall, usage = run_poll(binary, config, log, extra)
    sim_cpu, requests = sim.cpu_seconds() - sim_cpu, sim.requests() - requests
    polls, ok = query(
        db, "SELECT count(*), coalesce(sum(outcome = 'ok'), 0) FROM polls WHERE poll_id > ?",
        before_id,
    )
    changes = query(
        db, "SELECT count(*) FROM profile_changes WHERE poll_id > ?", before_id
    )[0]
    first, last = query(
        db, "SELECT min(started_at), max(finished_at) FROM polls WHERE poll_id > ?", before_id
    )
    span = (
        (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
        if first and last
        else 0.0
    )
    grown = database_bytes(db) - size_before
    return Cycle(name, code, wall, usage, polls, ok, changes, grown, sim_cpu, requests, span)


def main():
    args = arguments()
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        print(f"--binary: {binary} is not an executable; build it first", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="scanwatch-bench-")
    sim = None
    try:
        sim = Simulator(binary, workdir, args)
        db = os.path.join(workdir, "bench.db")
        config = os.path.join(workdir, "bench.toml")
        text = sim.config.replace(
            "[api]\n", f"[api]\nmax_concurrency = {args.concurrency}\n", 1
        )
        text = re.sub(r'^database = .*$', f"database = {json.dumps(db)}", text, flags=re.M)
        with open(config, "w") as out:
            out.write(text)
        log = os.path.join(workdir, "poll.log")
        n = args.customers
        bound = n * args.latency / args.concurrency

        baseline = measure("baseline", sim, binary, config, db, log)
        fixed = measure(
            "one customer", sim, binary, config, db, log,
            ("--customer", sim.customer_ids[0]),
        )
        to_change = max(1, round(args.changed * n * args.profiles))
        unchanged_runs, changed_runs, mutated = [], [], 0
        for round_ in range(1, args.rounds + 1):
            suffix = f" {round_}" if args.rounds > 1 else ""
            unchanged_runs.append(measure("unchanged" + suffix, sim, binary, config, db, log))
            mutated = len(sim.command({"op": "mutate", "count": to_change}))
            changed_runs.append(measure("changed" + suffix, sim, binary, config, db, log))
        cycles = [baseline]
        for pair in zip(unchanged_runs, changed_runs):
            cycles.extend(pair)

        # Each figure is the median over the rounds; a changed cycle is
        # compared with the unchanged one just before it.
        marginal_us = median(
            (u.cpu - fixed.cpu) / (n - 1) * 1e6 for u in unchanged_runs
        )
        raw_us = median(u.cpu / n * 1e6 for u in unchanged_runs)
        per_change_us = median(
            (c.cpu - u.cpu) / c.changes * 1e6 if c.changes else 0.0
            for u, c in zip(unchanged_runs, changed_runs)
        )
        bytes_per_poll = median(u.grown / n for u in unchanged_runs)
        unchanged_ratio = median(u.wall / bound for u in unchanged_runs)
        changed_ratio = median(c.wall / bound for c in changed_runs)
        changes = median(c.changes for c in changed_runs)

        print(
            f"scanwatch cycle benchmark: {n} customers x {args.profiles} profiles, "
            f"latency {args.latency * 1000:g} ms, max_concurrency {args.concurrency}, "
            f"no request-rate cap"
        )
        print(f"machine: {machine()}")
        print(
            f"bound = customers x latency / concurrency = {bound:.2f} s; "
            f"{mutated} mutations before each changed cycle; "
            f"{args.rounds} round(s), figures below are medians"
        )
        print()
        header = (
            f"{'cycle':<12} {'wall s':>7} {'ratio':>6} {'polls s':>7} {'user s':>7} {'sys s':>6} "
            f"{'cpu/poll us':>11} {'rss MiB':>8} {'db bytes/poll':>13} {'changes':>8}"
        )
        print(header)
        print("-" * len(header))
        for c in cycles:
            print(
                f"{c.name:<12} {c.wall:7.2f} {c.wall / bound:6.3f} {c.span:7.2f} {c.user:7.2f} "
                f"{c.sys:6.2f} {c.cpu / n * 1e6:11.0f} {c.rss_mb:8.1f} "
                f"{c.grown / n:13.0f} {c.changes:8d}"
            )
        print(
            "wall: the whole `scanwatch poll` process; polls: first poll start to last "
            "poll end, from the polls table"
        )
        print()
        print(
            f"fixed cost of a run (one-customer poll, same database): "
            f"{fixed.cpu * 1000:.0f} ms CPU, {fixed.wall * 1000:.0f} ms wall, "
            f"{fixed.rss_mb:.1f} MiB"
        )
        print(
            f"CPU per unchanged poll: {marginal_us:.0f} us marginal "
            f"((unchanged - fixed) / (N - 1)), {raw_us:.0f} us raw (unchanged / N)"
        )
        print(
            f"CPU per changed profile: {per_change_us:.0f} us "
            f"((changed - unchanged) / {changes:.0f} changes)"
        )
        served = sum(c.requests for c in cycles[1:])
        sim_cpu = sum(c.sim_cpu for c in cycles[1:])
        if served and sim_cpu > 0:
            per_request = sim_cpu / served
            print(
                f"simulator: {per_request * 1e6:.0f} us CPU per request, so about "
                f"{1 / per_request:,.0f} requests/s per core; the bound needs "
                f"{n / bound:,.0f}/s"
            )

        problems = []
        for c in cycles:
            if c.code != 0:
                problems.append(f"{c.name}: scanwatch poll exited {c.code}; see {log}")
            if c.polls != n or c.ok != n:
                problems.append(f"{c.name}: {c.ok} of {c.polls} polls ok, expected {n}")
        if fixed.code != 0 or fixed.ok != 1:
            problems.append(f"one-customer poll failed; see {log}")
        if baseline.changes != n * args.profiles:
            problems.append(f"baseline recorded {baseline.changes} changes")
        for u, c in zip(unchanged_runs, changed_runs):
            if u.changes != 0:
                problems.append(f"{u.name} cycle recorded {u.changes} changes")
            if c.changes == 0:
                problems.append(f"{c.name} cycle recorded no change")

        targets = [
            (f"unchanged cycle wall <= {MAX_WALL_RATIO} x bound",
             unchanged_ratio <= MAX_WALL_RATIO, f"{unchanged_ratio:.3f}"),
            (f"changed cycle wall <= {MAX_WALL_RATIO} x bound",
             changed_ratio <= MAX_WALL_RATIO, f"{changed_ratio:.3f}"),
            (f"CPU per unchanged poll <= {MAX_CPU_PER_UNCHANGED_POLL_US} us (marginal)",
             marginal_us <= MAX_CPU_PER_UNCHANGED_POLL_US, f"{marginal_us:.0f} us"),
            (f"CPU per changed profile <= {MAX_CPU_PER_CHANGED_PROFILE_US} us",
             per_change_us <= MAX_CPU_PER_CHANGED_PROFILE_US, f"{per_change_us:.0f} us"),
            (f"database growth per unchanged poll <= {MAX_BYTES_PER_UNCHANGED_POLL} bytes",
             bytes_per_poll <= MAX_BYTES_PER_UNCHANGED_POLL, f"{bytes_per_poll:.0f} bytes"),
            (f"peak RSS of every cycle <= {MAX_PEAK_RSS_MB} MB",
             max(c.rss_mb for c in cycles) * 1.048576 <= MAX_PEAK_RSS_MB,
             f"{max(c.rss_mb for c in cycles) * 1.048576:.1f} MB"),
        ]
        print()
        print("targets" + (" (not checked: --smoke)" if args.smoke else "") + ":")
        missed = 0
        for name, met, figure in targets:
            mark = "met   " if met else "MISSED"
            print(f"  {mark} {name}: {figure}")
            missed += not met
        for problem in problems:
            print(f"  FAILED {problem}")
        if problems:
            return 1
        if missed and not args.smoke:
            return 1
        return 0
    finally:
        if sim is not None:
            sim.stop()
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
