#!/usr/bin/env python3
"""The benchmark harness of issue 13. Run it through `bench/run` (which installs the tools and
builds the release binaries first); BENCHMARKS.md says how to read what it prints. A full
run prints a dated section and appends it to bench/history/<UTC date>.md (and a line to
bench/history/README.md); BENCHMARKS.md's latest result is updated by hand.

For each backend (SQLite, PostgreSQL) it starts the Kaleyra simulator (`kaleyra-sim`) and the
service (`telecons serve`) as separate processes on loopback, then measures with wrk:

  instance A (fresh database, LOG_LEVEL=warn): start-up time, idle RSS; a few
    teleconsultations booked through the API (complete lists, start in the past, so their
    participants get links) plus seeded rows up to --rows-small; then for each Kaleyra latency:
    /-/healthz, GET /teleconsultation/:id (the join), POST /teleconsultation with known users
    and with a new patient in each request; Kaleyra calls per operation from the simulator's
    log; peak RSS.
  instance B (the same database seeded up to --rows-large, LOG_LEVEL=warn): start-up time,
    idle RSS, /-/healthz and the join at the first latency.
  instance C (the same database, LOG_LEVEL=info): the join again, and the log volume.

With --drain (issue 22), instead: a backlog of due rooms drained at the rate Kaleyra allows
(`drain_backend`, `drain_once`), the join and bookings measured during one of the drains and
without it (`drain_load`), reported against the targets (`drain_report`).

Every process it starts is stopped when it ends, on success, failure or Ctrl-C, and the
PostgreSQL database it made is dropped. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import http.client
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "lua"
HISTORY = ROOT / "bench" / "history"
API_KEY = "bench-api-key"
BACKEND_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# Seeded ids: 8 hex of a time in 2021, 8 hex of a multiplicative hash, 8 hex of the index:
# unique, 24 lowercase hex like the service's, never equal to an id made now.
SEED_EPOCH_SECS = 0x60000000
KNOWN_DOCTORS = 16
KNOWN_PATIENTS = 64


class HarnessError(Exception):
    """The harness itself failed (not a slow figure): the run exits non-zero."""


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


# ---------------------------------------------------------------------------------------
# Processes: everything started is registered here and stopped at the end.
# ---------------------------------------------------------------------------------------


class Processes:
    def __init__(self) -> None:
        self.live: list[subprocess.Popen] = []

    def start(self, args, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, **kwargs)
        self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15.0) -> int:
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.live:
            self.live.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in list(reversed(self.live)):
            self.stop(proc, timeout=5.0)


PROCS = Processes()


def on_signal(signum, _frame):
    # Once: the clean-up that follows must not be interrupted by a second Ctrl-C.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------------------
# Small HTTP helpers (loopback only)
# ---------------------------------------------------------------------------------------


def http_call(port: int, method: str, path: str, body=None, headers=None, timeout=30.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed
    finally:
        conn.close()


def ready_status(port: int) -> int | None:
    """The status of GET /-/ready, or None when nothing answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
    except OSError:
        return None
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(m.group(1)) if m else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# ---------------------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------------------


class Database:
    """A fresh database for one backend, made at the start and removed at the end."""

    def __init__(self, backend: str, args, workdir: Path):
        self.backend = backend
        self.args = args
        if backend == "sqlite":
            self.path = workdir / "bench.db"
            self.url = f"sqlite://{self.path}"
        else:
            self.name = f"telecons_bench_{os.getpid()}_{secrets.token_hex(3)}"
            self.admin = args.postgres_url.rstrip("/")
            self.url = f"{self.admin}/{self.name}"
            self.psql_admin(f"CREATE DATABASE {self.name}")
        self.created = True

    def psql_admin(self, sql: str) -> str:
        return run_sql_psql(f"{self.admin}/postgres", sql)

    def run(self, sql: str) -> str:
        if self.backend == "sqlite":
            res = subprocess.run(
                ["sqlite3", "-batch", "-bail", str(self.path)],
                input=sql, text=True, capture_output=True,
            )
            if res.returncode != 0:
                raise HarnessError(f"sqlite3 failed: {res.stderr.strip()}")
            return res.stdout
        return run_sql_psql(self.url, sql)

    def query_int(self, sql: str) -> int:
        """One integer from `sql` (SQLite waits for the service's write lock)."""
        prefix = "PRAGMA busy_timeout = 30000;\n" if self.backend == "sqlite" else ""
        out = self.run(prefix + sql)
        return int(out.strip().splitlines()[-1])

    def count(self) -> int:
        return self.query_int("SELECT COUNT(*) FROM teleconsultations;")

    def seed(self, lo: int, hi: int) -> float:
        """Inserts teleconsultations lo..hi-1 (one transaction): each with a doctor and a
        patient out of 3 expected (incomplete: no room wanted, nothing for the provisioner),
        start in the future. Returns the seconds it took."""
        if hi <= lo:
            return 0.0
        started = time.perf_counter()
        self.run(seed_sql(self.backend, lo, hi))
        return time.perf_counter() - started

    def drop(self) -> None:
        if self.backend == "postgres" and self.created:
            try:
                self.psql_admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            except HarnessError as err:
                log(f"could not drop {self.name}: {err}")
        self.created = False


def run_sql_psql(url: str, sql: str) -> str:
    res = subprocess.run(
        ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", url],
        input=sql, text=True, capture_output=True,
    )
    if res.returncode != 0:
        raise HarnessError(f"psql failed: {res.stderr.strip()}")
    return res.stdout


TC_COLUMNS = (
    "id, version, state, participant_count, start_at_ms, duration_secs, desired_room, "
    "desired_fingerprint, room_id, room_fingerprint, provision_due_at_ms, provision_attempts, "
    "lease_owner, lease_until_ms, creating_fingerprint, created_at_ms, updated_at_ms, "
    "created_by, updated_by"
)
P_COLUMNS = (
    "teleconsultation_id, position, external_id, kaleyra_user_id, role, groups_json, "
    "full_name, language, link, start_at_ms"
)


def seed_sql(backend: str, lo: int, hi: int) -> str:
    now_ms = int(time.time() * 1000)
    start_ms = int(dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    if backend == "sqlite":
        ident = f"printf('%08x%08x%08x', {SEED_EPOCH_SECS} + i / 64, (i * 2654435761) % 4294967296, i)"
        rows = f"WITH RECURSIVE n(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {hi})"
        head = "PRAGMA busy_timeout = 30000;\nBEGIN IMMEDIATE;"
        tail = "COMMIT;\nANALYZE;"
    else:
        ident = (
            f"lpad(to_hex({SEED_EPOCH_SECS} + i / 64), 8, '0') || "
            "lpad(to_hex((i * 2654435761) % 4294967296), 8, '0') || lpad(to_hex(i), 8, '0')"
        )
        rows = f"WITH n(i) AS (SELECT generate_series({lo}::bigint, {hi - 1}::bigint))"
        head = "BEGIN;"
        tail = "COMMIT;\nANALYZE teleconsultations;\nANALYZE participants;"
    return f"""{head}
{rows}
INSERT INTO teleconsultations ({TC_COLUMNS})
SELECT {ident}, 1, 'active', 3, {start_ms} + (i % 1000) * 3600000, 1800, NULL,
       NULL, NULL, NULL, NULL, 0,
       NULL, NULL, NULL, {now_ms} - {hi} + i, {now_ms} - {hi} + i,
       'bench-seed', 'bench-seed'
FROM n;
{rows}
INSERT INTO participants ({P_COLUMNS})
SELECT {ident}, 0, 'seed-doctor-' || (i % 1000), 'seed_doctor_' || (i % 1000), 'plus',
       '["doctor"]', 'Seed Doctor ' || (i % 1000), NULL, NULL, {start_ms} + (i % 1000) * 3600000
FROM n;
{rows}
INSERT INTO participants ({P_COLUMNS})
SELECT {ident}, 1, 'seed-patient-' || i, 'seed_patient_' || i, 'basic',
       '["patient"]', 'Seed Patient ' || i, NULL, NULL, {start_ms} + (i % 1000) * 3600000
FROM n;
{tail}
"""


# ---------------------------------------------------------------------------------------
# The simulator and the service
# ---------------------------------------------------------------------------------------


class Simulator:
    def __init__(self, bin_dir: Path, latency_ms: int, workdir: Path):
        self.stderr = open(workdir / "kaleyra-sim.log", "ab")
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = PROCS.start(
            [str(bin_dir / "kaleyra-sim"), "--port", "0", "--api-key", API_KEY,
             "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, stderr=self.stderr, env=env,
        )
        line = self.proc.stdout.readline().decode().strip()
        m = re.match(r"https?://127\.0\.0\.1:(\d+)", line)
        if not m:
            raise HarnessError(f"kaleyra-sim printed {line!r} instead of its base URL")
        self.base_url = line
        self.port = int(m.group(1))

    def set_latency(self, ms: int) -> None:
        status, body = http_call(self.port, "PUT", "/_sim/latency", {"ms": ms})
        if status != 200:
            raise HarnessError(f"PUT /_sim/latency answered {status} {body}")

    def clear_requests(self) -> None:
        status, _ = http_call(self.port, "DELETE", "/_sim/requests")
        if status != 204:
            raise HarnessError(f"DELETE /_sim/requests answered {status}")

    def requests(self) -> list[dict]:
        status, body = http_call(self.port, "GET", "/_sim/requests", timeout=120)
        if status != 200:
            raise HarnessError(f"GET /_sim/requests answered {status}")
        return body

    def stop(self) -> None:
        PROCS.stop(self.proc, sig=signal.SIGINT)
        self.stderr.close()


class EventReceiver:
    """The platform's webhook for --events: answers every event 204 at once (keep-alive), on
    loopback, in a thread of the harness; counts them. Light, so that what is measured is the
    service's own work of storing, signing and sending."""

    SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    def __init__(self) -> None:
        self.port = free_port()
        self.received = 0
        started = threading.Event()
        loop = asyncio.new_event_loop()

        async def serve() -> None:
            await asyncio.start_server(self._connection, "127.0.0.1", self.port)
            started.set()
            await asyncio.Event().wait()

        threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True).start()
        if not started.wait(10):
            raise HarnessError("the events' receiver did not start")

    async def _connection(self, reader, writer) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.received += 1
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def env(self) -> dict[str, str]:
        return {"EVENTS_WEBHOOK_URL": f"http://127.0.0.1:{self.port}/events",
                "EVENTS_WEBHOOK_SECRET": self.SECRET}


# Started once by main() with --events; every service measured then sends it its events.
RECEIVER: EventReceiver | None = None


class Service:
    """`wrapper`: a command the service runs under (valgrind for --instructions)."""

    def __init__(self, bin_dir: Path, db: Database, sim: Simulator, log_level: str,
                 workdir: Path, tag: str, wrapper: list[str] | None = None):
        self.port = free_port()
        self.log_path = workdir / f"telecons-{db.backend}-{tag}.log"
        self.logfile = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("BANDYER_", "KALEYRA_", "AUTH", "JWT_", "TELECONSULTATION_"))
               and k not in ("DATABASE_URL", "HTTP_PORT", "LOG_LEVEL", "RUST_LOG")}
        env.update(
            BANDYER_API_SECRET_KEY=API_KEY,
            BANDYER_BASE_URL=sim.base_url,
            DATABASE_URL=db.url,
            HTTP_PORT=str(self.port),
            LOG_LEVEL=log_level,
        )
        if RECEIVER is not None:
            env.update(RECEIVER.env())
        started = time.perf_counter()
        self.proc = PROCS.start(
            [*(wrapper or []), str(bin_dir / "telecons"), "serve"],
            stdout=self.logfile, stderr=subprocess.STDOUT, env=env,
        )
        deadline = started + 60
        while True:
            status = ready_status(self.port)
            if status == 200:
                break
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"telecons serve exited with {self.proc.returncode}; see {self.log_path}")
            if time.perf_counter() > deadline:
                raise HarnessError(f"/-/ready not 200 within 60 s; see {self.log_path}")
            time.sleep(0.001)
        self.ready_ms = (time.perf_counter() - started) * 1000

    def rss_kb(self) -> dict[str, int]:
        return proc_status(self.proc.pid)

    def stop(self) -> None:
        code = PROCS.stop(self.proc, sig=signal.SIGTERM, timeout=35)
        self.logfile.close()
        if code not in (0, -signal.SIGTERM):
            log(f"telecons serve exited with {code}; see {self.log_path}")


# ---------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------


WRK_RUNS = 0


def wrk(args, port: int, path: str, script: str, seconds: float, extra_env=None,
        workdir: Path | None = None, name: str = "") -> dict:
    global WRK_RUNS
    WRK_RUNS += 1
    env = dict(os.environ, BENCH_LUA_DIR=str(LUA), **(extra_env or {}))
    # Every wrk run its own new users (the warm-up's are not the measure's).
    if "BENCH_NONCE" in env:
        env["BENCH_NONCE"] += f"r{WRK_RUNS}"
    cmd = [
        "wrk", "-t", str(args.threads), "-c", str(args.connections),
        "-d", f"{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", str(LUA / script), f"http://127.0.0.1:{port}{path}",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if workdir is not None and name:
        (workdir / f"wrk-{name}.txt").write_text(" ".join(cmd) + "\n" + res.stdout + res.stderr)
    line = next((l for l in res.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if res.returncode != 0 or line is None:
        raise HarnessError(f"wrk failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    out = json.loads(line[len("BENCHJSON "):])
    secs = out["duration_us"] / 1e6
    out["rps"] = out["requests"] / secs if secs > 0 else 0.0
    out["errors_total"] = sum(out["errors"].values())
    return out


def normalize(path: str) -> str:
    """/v2/rooms/abc → /v2/rooms/{id}, so calls group by route."""
    parts = path.split("/")
    if len(parts) > 3:
        parts[3:] = ["{id}"] + parts[4:]
    return "/".join(parts)


def kaleyra_breakdown(requests: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in requests:
        key = f"{r['method']} {normalize(r['path'])}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def events_sent(svc: Service) -> float:
    """With --events, waits until the service has sent every event it holds (at most 5
    minutes), so that a measure never pays for the events of the one before; the seconds
    it took."""
    if RECEIVER is None:
        return 0.0
    started = time.perf_counter()
    while metrics(svc.port).get("events_pending", 0.0) > 0:
        if time.perf_counter() - started > 300:
            raise HarnessError("the service did not send its events within 5 minutes")
        time.sleep(0.2)
    return time.perf_counter() - started


def measure(args, svc: Service, sim: Simulator | None, name: str, path: str, script: str,
            workdir: Path, extra_env=None, min_ok_share: float = 0.5) -> dict:
    """A warm-up run, then the measured run; with `sim`, the Kaleyra calls of the measured
    run (the simulator's log, cleared in between)."""
    if args.warmup > 0:
        wrk(args, svc.port, path, script, args.warmup, extra_env)
        # Let the warm-up's last requests (and their Kaleyra calls) finish first.
        time.sleep(0.5)
    events_sent(svc)
    if sim is not None:
        sim.clear_requests()
    cpu_before = cpu_seconds(svc.proc.pid)
    result = wrk(args, svc.port, path, script, args.duration, extra_env, workdir, name)
    # The events the run caused are its work too: sent before its CPU is read.
    result["events_drain_s"] = events_sent(svc)
    result["cpu_ms_per_request"] = (
        (cpu_seconds(svc.proc.pid) - cpu_before) * 1000 / result["requests"]
        if result["requests"] else 0.0)
    result["rss_after_kb"] = svc.rss_kb()
    if sim is not None:
        calls = sim.requests()
        result["kaleyra_calls"] = len(calls)
        result["kaleyra_per_request"] = len(calls) / result["requests"] if result["requests"] else 0
        result["kaleyra_breakdown"] = kaleyra_breakdown(calls)
    return checked(name, result, svc, workdir, min_ok_share,
                   f", service CPU {result['cpu_ms_per_request']:.3f} ms/request"
                   + (f", Kaleyra calls/request {result['kaleyra_per_request']:.2f}" if sim
                      else "")
                   + (f", its events all sent {result['events_drain_s']:.1f} s after it"
                      if RECEIVER is not None else ""))


def checked(name: str, result: dict, svc: Service, workdir: Path, min_ok_share: float = 0.5,
            more: str = "") -> dict:
    """Fails the run when a measure completed no request or too few 2xx answers (the harness
    is broken, not slow); logs its figures (`more` appended)."""
    if result["requests"] == 0:
        raise HarnessError(f"{name}: no request completed")
    ok_share = 1 - result["errors"]["status"] / result["requests"]
    if ok_share < min_ok_share:
        raise HarnessError(
            f"{name}: only {ok_share:.0%} of the answers were 2xx; see {workdir}/wrk-{name}.txt "
            f"and {svc.log_path}")
    if result["errors_total"]:
        log(f"  {name}: errors {result['errors']}")
    log(f"  {name}: {result['rps']:.0f} req/s, p50 {result['latency_us']['p50'] / 1000:.2f} ms, "
        f"p99 {result['latency_us']['p99'] / 1000:.2f} ms{more}")
    return result


def book(port: int, doctor: str, patient: str, start: dt.datetime, duration: int) -> str:
    body = {
        "participants": {"number": 2, "data": [
            {"userId": doctor, "groups": ["doctor"], "fullName": f"Doctor {doctor}"},
            {"userId": patient, "groups": ["patient"], "fullName": f"Patient {patient}"},
        ]},
        "start_date": iso(start),
        "duration_in_seconds": duration,
    }
    status, answer = http_call(port, "POST", "/teleconsultation", body, {"miauserid": doctor})
    if status != 201:
        raise HarnessError(f"POST /teleconsultation answered {status} {answer}")
    return answer["roomId"]


def make_targets(args, svc: Service, workdir: Path) -> Path:
    """Books --targets teleconsultations through the API, started 10 minutes ago so that
    their participants get links, checks each participant's GET gives one, and writes the
    file of (id, participant) pairs the join script cycles through."""
    lines = []
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)
    for k in range(args.targets):
        doctor, patient = f"bench-target-doctor-{k}", f"bench-target-patient-{k}"
        tc = book(svc.port, doctor, patient, start, 4 * 3600)
        for user in (doctor, patient):
            status, answer = http_call(svc.port, "GET", f"/teleconsultation/{tc}",
                                       headers={"miauserid": user})
            if status != 200 or not isinstance(answer, dict) or not answer.get("accessLinkURL"):
                raise HarnessError(f"GET /teleconsultation/{tc} as {user}: {status} {answer}")
            lines.append(f"{tc} {user}")
    path = workdir / "targets.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def precreate_known_users(svc: Service) -> None:
    """One booking per known patient, so that the pool's Kaleyra users exist before the
    'known users' POST phases."""
    start = dt.datetime(2031, 1, 15, 10, tzinfo=dt.timezone.utc)
    for k in range(KNOWN_PATIENTS):
        book(svc.port, f"bench-doctor-{k % KNOWN_DOCTORS}", f"bench-patient-{k}", start, 1800)


# ---------------------------------------------------------------------------------------
# One backend
# ---------------------------------------------------------------------------------------


def run_backend(args, backend: str, workdir: Path) -> dict:
    res: dict = {"backend": backend, "latencies": {}}
    bdir = workdir / backend
    bdir.mkdir()
    db = Database(backend, args, bdir)
    sim = None
    svc = None
    try:
        sim = Simulator(args.bin_dir, args.latencies[0], bdir)
        log(f"{BACKEND_NAMES[backend]}: starting the service on a fresh database")
        svc = Service(args.bin_dir, db, sim, args.log_level, bdir, "a")
        res["ready_ms_fresh"] = svc.ready_ms
        time.sleep(1.0)
        res["rss_idle_kb"] = svc.rss_kb()["VmRSS"]
        log(f"  ready in {svc.ready_ms:.0f} ms (fresh database, migrations included); "
            f"idle RSS {res['rss_idle_kb'] / 1024:.1f} MB")

        targets = make_targets(args, svc, bdir)
        precreate_known_users(svc)
        res["seed_small_s"] = db.seed(0, max(0, args.rows_small - db.count()))
        target_env = {"BENCH_TARGETS": str(targets)}
        nonce = 0

        for latency in args.latencies:
            sim.set_latency(latency)
            log(f"  Kaleyra latency {latency} ms")
            lat: dict = {}
            lat["healthz"] = measure(args, svc, None, f"{backend}-{latency}ms-healthz",
                                     "/-/healthz", "plain.lua", bdir)
            lat["join_rows"] = db.count()
            lat["join"] = measure(args, svc, sim, f"{backend}-{latency}ms-join", "/",
                                  "join.lua", bdir, target_env)
            for users in ("known", "new"):
                nonce += 1
                env = {"BENCH_POST_USERS": users, "BENCH_NONCE": f"{os.getpid()}x{nonce}",
                       "BENCH_DOCTORS": str(KNOWN_DOCTORS),
                       "BENCH_PATIENTS": str(KNOWN_PATIENTS)}
                lat[f"post_{users}"] = measure(
                    args, svc, sim, f"{backend}-{latency}ms-post-{users}", "/teleconsultation",
                    "book.lua", bdir, env)
            res["latencies"][latency] = lat

        # The agenda reads the store only: measured once, whatever Kaleyra's latency.
        res["agenda"] = measure(args, svc, None, f"{backend}-agenda", "/", "agenda.lua", bdir,
                                target_env)
        res["rss_peak_kb"] = svc.rss_kb()["VmHWM"]
        svc.stop()
        svc = None
        log(f"  peak RSS {res['rss_peak_kb'] / 1024:.1f} MB")

        # The large database: the same, seeded up to --rows-large with the service stopped.
        sim.set_latency(args.latencies[0])
        have = db.count()
        log(f"  seeding {max(0, args.rows_large - have):,} teleconsultations "
            f"(to {args.rows_large:,})")
        res["seed_large_s"] = db.seed(args.rows_small, args.rows_small + max(0, args.rows_large - have))
        res["rows_large"] = db.count()
        log(f"  seeded in {res['seed_large_s']:.1f} s; {res['rows_large']:,} teleconsultations")

        svc = Service(args.bin_dir, db, sim, args.log_level, bdir, "b")
        res["ready_ms_large"] = svc.ready_ms
        time.sleep(1.0)
        res["rss_idle_large_kb"] = svc.rss_kb()["VmRSS"]
        log(f"  ready in {svc.ready_ms:.0f} ms ({res['rows_large']:,} rows); "
            f"idle RSS {res['rss_idle_large_kb'] / 1024:.1f} MB")
        res["large_healthz"] = measure(args, svc, None, f"{backend}-large-healthz",
                                       "/-/healthz", "plain.lua", bdir)
        res["large_join"] = measure(args, svc, sim, f"{backend}-large-join", "/",
                                    "join.lua", bdir, target_env)
        res["large_agenda"] = measure(args, svc, None, f"{backend}-large-agenda", "/",
                                      "agenda.lua", bdir, target_env)
        res["rss_peak_large_kb"] = svc.rss_kb()["VmHWM"]
        svc.stop()
        svc = None

        if args.info_log:
            svc = Service(args.bin_dir, db, sim, "info", bdir, "c-info")
            res["ready_ms_info"] = svc.ready_ms
            before = svc.log_path.stat().st_size
            res["info_join"] = measure(args, svc, None, f"{backend}-info-join", "/",
                                       "join.lua", bdir, target_env)
            # The warm-up's lines count too: bytes per request over both runs is close
            # enough, so divide by the measured run and say so.
            res["info_log_bytes"] = svc.log_path.stat().st_size - before
            svc.stop()
            svc = None
        return res
    finally:
        if svc is not None:
            svc.stop()
        if sim is not None:
            sim.stop()
        db.drop()


# ---------------------------------------------------------------------------------------
# Drain: a backlog worked at Kaleyra's pace (issue 22)
# ---------------------------------------------------------------------------------------


def sim_call(sim: Simulator, method: str, path: str, body=None, expect=(200, 201, 204)):
    status, answer = http_call(sim.port, method, path, body)
    if status not in expect:
        raise HarnessError(f"{method} {path} answered {status} {answer}")
    return answer


def metrics(port: int) -> dict[str, float]:
    """The service's metrics by name, each summed over its series (labels)."""
    status, text = http_call(port, "GET", "/-/metrics", timeout=30)
    if status != 200 or not isinstance(text, str):
        raise HarnessError(f"GET /-/metrics answered {status}")
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


ROOMS_CREATED = "rooms_created_total"
AWAITING = "teleconsultations_awaiting_provisioning"
# The backlog's gauges (issue 22): their highest value over a drain is reported.
BACKLOG_GAUGES = ("backlog_due", "backlog_oldest_due_seconds", "backlog_being_worked")


def book_backlog(port: int, count: int, tag: str, threads: int = 16) -> float:
    """Books `count` teleconsultations of known users (one room each), `threads` at a
    time; returns the seconds it took."""
    start = dt.datetime(2031, 2, 1, 10, tzinfo=dt.timezone.utc)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(
            lambda k: book(port, f"bench-doctor-{k % KNOWN_DOCTORS}",
                           f"bench-patient-{k % KNOWN_PATIENTS}", start, 1800),
            range(count)))
    return time.perf_counter() - started


def wait_until_due(db: Database) -> None:
    """Waits until every stored provisioning is due (the service is stopped meanwhile)."""
    last_due_ms = db.query_int(
        "SELECT COALESCE(MAX(provision_due_at_ms), 0) FROM teleconsultations;")
    wait = last_due_ms / 1000 - time.time() + 1
    if wait > 0:
        log(f"    waiting {wait:.0f} s until the whole backlog is due")
        time.sleep(wait)


def drain_once(args, db: Database, sim: Simulator, bdir: Path, rate: int,
               lost: float, tag: str, targets: Path | None = None) -> dict:
    """Books --drain-backlog teleconsultations while Kaleyra refuses room creations, lets the
    whole backlog come due with the service stopped, then starts it against a Kaleyra 50 ms
    away allowing `rate` requests a second (and losing `lost` of the creation answers), and
    measures how fast the backlog drains: the service's `/-/metrics` every half second until
    nothing awaits provisioning (rooms created, listings, pauses, the backlog's gauges), and
    the simulator's log of the drain (calls let through, refused over the rate, lost answers).

    With `targets`, the join and bookings load the service from its first room on
    (`drain_load`), and once more with the same load after the backlog has drained, on the
    same instance and the same Kaleyra: their figures with and without a drain. The drain's
    time then includes the rooms of the bookings it deferred."""
    svc = Service(args.bin_dir, db, sim, args.log_level, bdir, f"{tag}-book")
    try:
        sim.set_latency(0)
        sim_call(sim, "PUT", "/_sim/rate-limit", {"per_second": None})
        sim_call(sim, "POST", "/_sim/faults",
                 {"route": "/v2/rooms", "method": "POST", "action": {"status": 503}})
        booked_s = book_backlog(svc.port, args.drain_backlog, tag)
    finally:
        svc.stop()
    log(f"    booked {args.drain_backlog:,} with Kaleyra refusing rooms in {booked_s:.1f} s")
    wait_until_due(db)
    sim_call(sim, "DELETE", "/_sim/faults")
    if lost > 0:
        sim_call(sim, "POST", "/_sim/faults",
                 {"route": "/v2/rooms", "method": "POST", "rate": lost,
                  "action": {"status_after_effect": LOST_ANSWER_STATUS}})
    sim.set_latency(DRAIN_LATENCY_MS)
    sim_call(sim, "PUT", "/_sim/rate-limit", {"per_second": rate})
    sim.clear_requests()
    svc = Service(args.bin_dir, db, sim, args.log_level, bdir, f"{tag}-drain")
    try:
        # `created_at`: (seconds since ready, rooms_created_total) at each reading.
        created_at: list[tuple[float, float]] = []
        peaks = dict.fromkeys(BACKLOG_GAUGES, 0.0)
        load = None
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.perf_counter()
            while True:
                time.sleep(0.5)
                reading = metrics(svc.port)
                created_at.append((time.perf_counter() - started, reading.get(ROOMS_CREATED, 0.0)))
                for gauge in BACKLOG_GAUGES:
                    peaks[gauge] = max(peaks[gauge], reading.get(gauge, 0.0))
                created = created_at[-1][1]
                if targets is not None and load is None and created > 0:
                    load = pool.submit(drain_load, args, svc, None, targets, bdir,
                                       f"{tag}-during")
                waiting = reading.get(AWAITING, 0.0)
                if waiting == 0 and created > 0:
                    break
                if created_at[-1][0] > DRAIN_TIMEOUT_S:
                    raise HarnessError(f"the backlog did not drain in {DRAIN_TIMEOUT_S} s "
                                       f"({waiting:.0f} waiting; see {svc.log_path})")
            elapsed = time.perf_counter() - started
            calls = sim.requests()
            rss = svc.rss_kb()["VmHWM"]
            loads = {"during": load.result()} if load is not None else {}
        if targets is not None:
            loads["after"] = drain_load(args, svc, sim, targets, bdir, f"{tag}-after")
    finally:
        svc.stop()
        sim_call(sim, "DELETE", "/_sim/faults")
        sim_call(sim, "PUT", "/_sim/rate-limit", {"per_second": None})
    faults = [c.get("fault") or "" for c in calls]
    refused = sum(1 for f in faults if f == "rate_limited")
    run = {"rate": rate, "lost": lost, "seconds": elapsed,
           "per_s": args.drain_backlog / elapsed,
           "first_room_s": next((t for t, c in created_at if c > 0), None),
           "rooms_created": created_at[-1][1], "steady_per_s": steady_rate(created_at),
           "kaleyra_calls": len(calls) - refused, "kaleyra_refused": refused,
           "lost_answers": sum(1 for f in faults if f.startswith("status_after_effect")),
           "listings": reading.get("room_listings_total", 0.0),
           "pauses": reading.get("kaleyra_pauses_total", 0.0),
           "backlog_peaks": peaks, "rss_peak_kb": rss, **loads}
    log(f"    drained at {rate}/s allowed, {lost:.0%} answers lost"
        f"{', under load' if loads else ''}: {elapsed:.1f} s, {run['per_s']:.0f} rooms/s "
        f"({run['per_s'] / rate:.0%} of the rate), {run['listings']:.0f} listings for "
        f"{run['lost_answers']} lost answers, {run['pauses']:.0f} pauses, {refused} calls "
        "refused over the rate")
    return run


def steady_rate(created_at: list[tuple[float, float]]) -> float | None:
    """Rooms per second between 10% and 90% of the rooms a drain created (the rate of
    `rooms_created_total`, the service's drain rate): its pace without the start (the first
    claims) and the tail (lost answers waiting their backoff). None when too few readings."""
    total = created_at[-1][1]
    t10, c10 = next(((t, c) for t, c in created_at if c >= 0.1 * total), (0.0, 0.0))
    t90, c90 = next(((t, c) for t, c in created_at if c >= 0.9 * total), (0.0, 0.0))
    return (c90 - c10) / (t90 - t10) if total > 0 and t90 > t10 else None


def drain_load(args, svc: Service, sim: Simulator | None, targets: Path, workdir: Path,
               name: str) -> dict:
    """The join and bookings together, as a drain meets them: a warm-up, then --duration
    measured.

    - The join at a fixed moderate rate, --drain-join-rate spread over --connections (each
      waits between its requests), not all the machine can take: on 2 cores, wrk at full
      load takes the CPU the drain needs, so the figure would be the kernel's split of the
      cores, and the drain it watches would slow down. Its latency is what a drain could
      spoil (the store's writer, the runtime's threads busy with the worker): the p99 < 5 ms
      target holds at --connections.
    - Bookings of known users (one room each), closed loop on --drain-post-connections:
      against the bound connections / (Kaleyra calls per booking × 0.05 s), as in the main
      benchmark. The bound with 64 connections (1,280 rooms a second) is beyond any rate
      Kaleyra allows here, so a few connections: their rooms share Kaleyra's rate with the
      drain (the simulator limits the company, not the caller), and a pause the drain's
      refusals cause delays them too — what the booking target checks.

    With `sim`, the Kaleyra calls per booking: every call of the measured run over its
    bookings (the join's room details are cached). Also the backlog awaiting provisioning as
    the measured run starts and ends: whether it ran during a drain."""
    pace_ms = max(1, round(args.connections * 1000 / args.drain_join_rate))
    join_env = {"BENCH_TARGETS": str(targets), "BENCH_PACE_MS": str(pace_ms)}
    post_args = argparse.Namespace(**{**vars(args), "connections": args.drain_post_connections,
                                      "threads": min(args.threads, args.drain_post_connections)})
    post_env = {"BENCH_POST_USERS": "known", "BENCH_DOCTORS": str(KNOWN_DOCTORS),
                "BENCH_PATIENTS": str(KNOWN_PATIENTS)}

    def together(seconds: float, keep: bool) -> tuple[dict, dict]:
        out = workdir if keep else None
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            join = pool.submit(wrk, args, svc.port, "/", "join.lua", seconds, join_env, out,
                               f"{name}-join")
            post = pool.submit(wrk, post_args, svc.port, "/teleconsultation", "book.lua",
                               seconds, post_env, out, f"{name}-post")
            return join.result(), post.result()

    if args.warmup > 0:
        together(args.warmup, keep=False)
    if sim is not None:
        sim.clear_requests()
    awaiting = [metrics(svc.port).get(AWAITING, 0.0)]
    join, post = together(args.duration, keep=True)
    awaiting.append(metrics(svc.port).get(AWAITING, 0.0))
    if sim is not None:
        calls = sim.requests()
        post["kaleyra_per_request"] = len(calls) / post["requests"] if post["requests"] else 0
        post["kaleyra_breakdown"] = kaleyra_breakdown(calls)
    return {"pace_ms": pace_ms, "awaiting": awaiting,
            "join": checked(f"{name}-join", join, svc, workdir),
            "post": checked(f"{name}-post", post, svc, workdir)}


DRAIN_LATENCY_MS = 50
DRAIN_TIMEOUT_S = 900
LOST_ANSWER_STATUS = 502


def drain_backend(args, backend: str, workdir: Path) -> dict:
    """The drains of one backend: each of --drain-rates, the last one again with 10% of the
    creation answers lost and again under the join's and bookings' load (unless
    --no-drain-load), each on a backlog of its own."""
    bdir = workdir / f"{backend}-drain"
    bdir.mkdir()
    db = Database(backend, args, bdir)
    sim = Simulator(args.bin_dir, 0, bdir)
    runs = []
    try:
        svc = Service(args.bin_dir, db, sim, args.log_level, bdir, "drain-users")
        try:
            precreate_known_users(svc)
            targets = make_targets(args, svc, bdir) if args.drain_load else None
        finally:
            svc.stop()
        log(f"{BACKEND_NAMES[backend]}: drains of {args.drain_backlog:,} due rooms")
        last = args.drain_rates[-1]
        for rate in [] if args.drain_load_only else args.drain_rates:
            for lost in (0.0, 0.1) if rate == last else (0.0,):
                runs.append(drain_once(args, db, sim, bdir, rate, lost,
                                       f"drain-{rate}-{int(lost * 100)}"))
        if targets is not None:
            runs.append(drain_once(args, db, sim, bdir, last, 0.0, f"drain-{last}-load",
                                   targets))
        return {"backend": backend, "runs": runs}
    finally:
        sim.stop()
        db.drop()


def drain_report(args, results: list[dict], info: dict, started: dt.datetime) -> str:
    """The drain's section: every drain, its targets (BENCHMARKS.md) and, with the load,
    the join and bookings during the drain and without it."""
    lines = [f"### {started:%Y-%m-%d %H:%M} UTC — drain {args.label}".rstrip(), ""]
    if args.note:
        lines += [args.note, ""]
    c, pc = args.connections, args.drain_post_connections
    lines += [f"- Command: `{shlex.join(['bench/run'] + shown_argv(args.argv))}`",
              f"- Code: {code_line(args, info)}",
              f"- Machine: {info.get('nproc')} CPUs ({info.get('cpu')}); load average at start "
              f"{info.get('load')}",
              f"- Backlog {args.drain_backlog:,} due rooms, Kaleyra {DRAIN_LATENCY_MS} ms away; "
              f"the load: the join paced to ~{args.drain_join_rate:,} req/s over {c} "
              f"connections and bookings of known users on {pc}, {args.duration:g} s after "
              f"{args.warmup:g} s of warm-up", "",
              "| Backend | Allowed/s | Answers lost | Load | Drain | Rooms/s (of the rate) | "
              "Rooms/s 10–90% | Kaleyra calls/s let through (of the rate); refused | "
              "Listings; lost answers | Pauses | Backlog due; oldest due; being worked (highest) "
              "| Peak RSS |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for run in r["runs"]:
            steady = run["steady_per_s"]
            calls_s = run["kaleyra_calls"] / run["seconds"]
            peaks = run["backlog_peaks"]
            lines.append(
                f"| {BACKEND_NAMES[r['backend']]} | {run['rate']} | {run['lost']:.0%} | "
                f"{'yes' if 'during' in run else 'no'} | {run['seconds']:.1f} s | "
                f"{run['per_s']:.0f} ({run['per_s'] / run['rate']:.0%}) | "
                f"{'—' if steady is None else f'{steady:.0f}'} | "
                f"{calls_s:.0f} ({calls_s / run['rate']:.0%}); {run['kaleyra_refused']:,} | "
                f"{run['listings']:.0f}; {run['lost_answers']:,} | {run['pauses']:.0f} | "
                f"{peaks['backlog_due']:,.0f}; {peaks['backlog_oldest_due_seconds']:.0f} s; "
                f"{peaks['backlog_being_worked']:.0f} | {run['rss_peak_kb'] / 1024:.0f} MB |")

    cols = [r["backend"] for r in results]
    t_rows: list[tuple[str, list[str]]] = []

    def target(label: str, f):
        cells = []
        for r in results:
            try:
                value, ok = f({(run["rate"], run["lost"], "during" in run): run
                               for run in r["runs"]})
                cells.append(f"{value} {verdict(ok)}")
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("—")
        t_rows.append((label, cells))

    last = args.drain_rates[-1]
    for rate in args.drain_rates:
        target(f"≥ 80% of R rooms/s, R = {rate}",
               lambda runs, rate=rate: (f"{runs[rate, 0.0, False]['per_s']:.0f} rooms/s, "
                                        f"{runs[rate, 0.0, False]['per_s'] / rate:.0%}",
                                        runs[rate, 0.0, False]["per_s"] >= 0.8 * rate))

    def lost_target(runs):
        a, b = runs[last, 0.1, False], runs[last, 0.0, False]
        ratio = a["seconds"] / b["seconds"]
        return f"{a['seconds']:.1f} s against {b['seconds']:.1f} s ({ratio:.2f}×)", ratio <= 1.5
    target(f"10% of answers lost: ≤ 1.5× as long (R = {last})", lost_target)
    target(f"One listing per pass, not per lost answer (R = {last}, 10% lost)",
           lambda runs: (f"{runs[last, 0.1, False]['listings']:.0f} listings for "
                         f"{runs[last, 0.1, False]['lost_answers']:,} lost answers", None))

    def during_drain(load: dict) -> bool:
        """The measured run ended with the backlog still being worked."""
        return load["awaiting"][1] > 0

    def join_target(runs):
        run = runs[last, 0.0, True]
        during, after = run["during"], run["after"]
        p99 = during["join"]["latency_us"]["p99"]
        value = (f"{ms(p99)} ms at {during['join']['rps']:,.0f} req/s (without a drain: "
                 f"{ms(after['join']['latency_us']['p99'])} ms)")
        if not during_drain(during):
            return value + ", the drain over before the measure", None
        return value, p99 < 5000
    target(f"Join p99 < 5 ms at {c} conn., during the drain (R = {last}, paced)", join_target)

    def post_target(runs):
        run = runs[last, 0.0, True]
        during, after = run["during"], run["after"]
        bound = pc / (after["post"]["kaleyra_per_request"] * DRAIN_LATENCY_MS / 1000)
        value = (f"{during['post']['rps']:.0f} req/s, {during['post']['rps'] / bound:.0%} of "
                 f"{bound:.0f} (without a drain: {after['post']['rps'] / bound:.0%})")
        if not during_drain(during):
            return value + ", the drain over before the measure", None
        return value, during["post"]["rps"] >= 0.8 * bound
    target(f"POST ≥ 80% of the bound {pc} / (calls × {l_s(DRAIN_LATENCY_MS)}), known users, "
           f"during the drain (R = {last})", post_target)

    lines += ["", "Targets:", "",
              "| | " + " | ".join(BACKEND_NAMES[col] for col in cols) + " |",
              "|---|" + "---|" * len(cols)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in t_rows]

    loaded = [(r["backend"], run) for r in results for run in r["runs"] if "during" in run]
    if loaded:
        lines += ["", f"The load (R = {last}): the join paced over {c} connections, bookings of "
                  f"known users on {pc}; backlog awaiting provisioning as the measure started "
                  "and ended.", "",
                  "| Backend | When | Join | Bookings | Kaleyra calls per booking | Awaiting |",
                  "|---|---|---|---|---|---|"]
        for backend, run in loaded:
            for when, key in (("during the drain", "during"), ("without a drain", "after")):
                load = run[key]
                per = load["post"].get("kaleyra_per_request")
                lines.append(
                    f"| {BACKEND_NAMES[backend]} | {when} | {load_cell(load['join'])} | "
                    f"{load_cell(load['post'])} | {'—' if per is None else f'{per:.2f}'} | "
                    f"{load['awaiting'][0]:,.0f} → {load['awaiting'][1]:,.0f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def count_instructions(args, workdir: Path) -> list[str]:
    """--instructions: the service's user-space instructions per request, counted by
    callgrind, for the join and for healthz: SQLite, the simulator at 0 ms, `wrk` with 1
    thread and 8 connections (valgrind runs one thread at a time), a warm-up of 3 s, the
    counters zeroed, --duration seconds measured, the counters dumped."""
    load = argparse.Namespace(**{**vars(args), "threads": 1, "connections": 8})
    sim = Simulator(args.bin_dir, 0, workdir)
    lines = []
    try:
        for route, path, script in (("join", "/", "join.lua"),
                                    ("healthz", "/-/healthz", "plain.lua")):
            rdir = workdir / route
            rdir.mkdir()
            db = Database("sqlite", args, rdir)
            out = rdir / "callgrind.out"
            svc = Service(args.bin_dir, db, sim, "warn", rdir, route,
                          wrapper=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
            try:
                env = {"BENCH_TARGETS": str(make_targets(args, svc, rdir))}
                wrk(load, svc.port, path, script, 3, env)
                callgrind_control("-z", svc)
                result = wrk(load, svc.port, path, script, args.duration, env, rdir, route)
                callgrind_control("-d", svc)
            finally:
                svc.stop()
            if result["requests"] == 0 or result["errors"]["status"]:
                raise HarnessError(f"{route}: {result['requests']} requests, errors "
                                   f"{result['errors']}; see {rdir}")
            total = callgrind_total(out)
            per = total / result["requests"]
            lines.append(f"{route}: {per:,.0f} instructions per request "
                         f"({result['requests']:,} requests, {total:,} instructions)")
            log(f"  {lines[-1]}")
    finally:
        sim.stop()
    return lines


def callgrind_control(option: str, svc: Service) -> None:
    res = subprocess.run(["callgrind_control", option, str(svc.proc.pid)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise HarnessError(f"callgrind_control {option} failed: {res.stderr.strip()[-300:]}")


def callgrind_total(out: Path) -> int:
    """The instructions of the dump written by `callgrind_control -d` (`out.1`, not the
    final file written at exit): its `summary:` (or `totals:`) line."""
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise HarnessError(f"callgrind wrote no dump next to {out}")
    for line in dumps[-1].read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise HarnessError(f"no summary line in {dumps[-1]}")


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "kernel": platform.release()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((l.split(":", 1)[1].strip() for l in f
                                if l.startswith("model name")), "unknown")
        with open("/proc/meminfo") as f:
            kb = next(int(l.split()[1]) for l in f if l.startswith("MemTotal"))
            info["memory"] = f"{kb / 1024 / 1024:.1f} GiB"
        with open("/proc/loadavg") as f:
            info["load"] = " ".join(f.read().split()[:3])
    except OSError:
        pass
    for key, cmd in (("rustc", ["rustc", "--version"]), ("wrk", ["wrk", "-v"])):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True)
            info[key] = (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            info[key] = "unknown"
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True).stdout
        branch = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--abbrev-ref", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        info["commit"] = f"{commit} ({branch}{', uncommitted changes' if dirty.strip() else ''})"
    except OSError:
        info["commit"] = "unknown"
    return info


def ms(us: float) -> str:
    v = us / 1000
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def load_cell(r: dict | None) -> str:
    if not r:
        return "—"
    cell = (f"{r['rps']:,.0f} req/s · p50 {ms(r['latency_us']['p50'])} ms · "
            f"p99 {ms(r['latency_us']['p99'])} ms")
    # Absent for a load that ran beside other work (a drain's): the CPU was not its own.
    if "cpu_ms_per_request" in r:
        cell += f" · CPU {r['cpu_ms_per_request']:.2f} ms/req"
    if r["errors_total"]:
        e = {k: v for k, v in r["errors"].items() if v}
        cell += " · errors " + ", ".join(f"{k} {v}" for k, v in e.items())
    return cell


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def report(args, results: list[dict], info: dict, started: dt.datetime, elapsed: float) -> str:
    cols = [r["backend"] for r in results]
    by = {r["backend"]: r for r in results}
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, f):
        cells = []
        for c in cols:
            try:
                cells.append(f(by[c]))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("—")
        rows.append((label, cells))

    c = args.connections
    row("Start-up to `/-/ready` 200, fresh database (migrations included)",
        lambda r: f"{r['ready_ms_fresh']:.0f} ms")
    row(f"Start-up to `/-/ready` 200, {args.rows_large:,} rows",
        lambda r: f"{r['ready_ms_large']:.0f} ms")
    row("RSS idle after start (fresh / large database)",
        lambda r: f"{r['rss_idle_kb'] / 1024:.1f} / {r['rss_idle_large_kb'] / 1024:.1f} MB")
    row("RSS peak (VmHWM) under load", lambda r: f"{r['rss_peak_kb'] / 1024:.1f} MB")
    for latency in args.latencies:
        pre = f"Kaleyra {latency} ms:"
        row(f"{pre} `GET /-/healthz`, {c} conn.", lambda r, l=latency: load_cell(r["latencies"][l]["healthz"]))
        row(f"{pre} `GET /teleconsultation/:id` (join), {c} conn.",
            lambda r, l=latency: load_cell(r["latencies"][l]["join"]))
        row(f"{pre} join / healthz throughput",
            lambda r, l=latency: f"{r['latencies'][l]['join']['rps'] / r['latencies'][l]['healthz']['rps']:.0%}")
        row(f"{pre} Kaleyra calls per GET",
            lambda r, l=latency: f"{r['latencies'][l]['join']['kaleyra_per_request']:.2f}")
        for users, what in (("known", "known users"), ("new", "a new patient each")):
            key = f"post_{users}"
            row(f"{pre} `POST /teleconsultation` ({what}), {c} conn.",
                lambda r, l=latency, k=key: load_cell(r["latencies"][l][k]))
            row(f"{pre} Kaleyra calls per POST ({what})",
                lambda r, l=latency, k=key: f"{r['latencies'][l][k]['kaleyra_per_request']:.2f}")
            if latency > 0:
                def bound(r, l=latency, k=key):
                    p = r["latencies"][l][k]
                    b = c / (p["kaleyra_per_request"] * l / 1000)
                    return f"{b:,.0f} req/s; reached {p['rps'] / b:.0%}"
                row(f"{pre} POST bound {c} / (calls × {l_s(latency)}) ({what})", bound)
    small = args.latencies[0]
    row(f"Join at Kaleyra {small} ms, ~{args.rows_small:,} rows (rows at measure time)",
        lambda r: f"{load_cell(r['latencies'][small]['join'])} ({r['latencies'][small]['join_rows']:,})")
    row(f"Join at Kaleyra {small} ms, {args.rows_large:,} rows (restarted)",
        lambda r: f"{load_cell(r['large_join'])} ({r['rows_large']:,})")
    row("Join large / small rows: p50, p99, throughput",
        lambda r: "p50 {:.2f}×, p99 {:.2f}×, req/s {:.2f}×".format(*growth(r, small)))
    row("`/-/healthz`, large database (restarted)", lambda r: load_cell(r["large_healthz"]))
    row(f"Agenda: a participant's first page (`GET /teleconsultations?limit=20`), "
        f"~{args.rows_small:,} rows", lambda r: load_cell(r["agenda"]))
    row(f"Agenda: the same, {args.rows_large:,} rows (restarted)",
        lambda r: load_cell(r["large_agenda"]))
    if args.info_log:
        row(f"Join with `LOG_LEVEL=info` (large database, Kaleyra {small} ms)",
            lambda r: load_cell(r["info_join"]))
        row("Join throughput, `info` / `warn` (same database)",
            lambda r: f"{r['info_join']['rps'] / r['large_join']['rps']:.0%}")
        row("Log written with `info`, per request",
            lambda r: f"{r['info_log_bytes'] / r['info_join']['requests']:.0f} bytes")
    row("Seeding time (small / large)",
        lambda r: f"{r['seed_small_s']:.1f} s / {r['seed_large_s']:.1f} s")

    # The targets (BENCHMARKS.md, "Targets").
    t_rows: list[tuple[str, list[str]]] = []

    def target(label: str, f):
        cells = []
        for col in cols:
            try:
                value, ok = f(by[col])
                cells.append(f"{value} {verdict(ok)}")
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("—")
        t_rows.append((label, cells))

    for latency in args.latencies:
        target(f"Join ≥ 50% of healthz throughput, Kaleyra {latency} ms",
               lambda r, l=latency: (
                   f"{r['latencies'][l]['join']['rps'] / r['latencies'][l]['healthz']['rps']:.0%}",
                   r['latencies'][l]['join']['rps'] >= 0.5 * r['latencies'][l]['healthz']['rps']))
        target(f"Join p99 < 5 ms at {c} conn., Kaleyra {latency} ms",
               lambda r, l=latency: (f"{ms(r['latencies'][l]['join']['latency_us']['p99'])} ms",
                                     r['latencies'][l]['join']['latency_us']['p99'] < 5000))
    for latency in [l for l in args.latencies if l > 0]:
        def post_target(r, l=latency):
            p = r["latencies"][l]["post_known"]
            b = c / (p["kaleyra_per_request"] * l / 1000)
            return f"{p['rps'] / b:.0%}", p["rps"] >= 0.8 * b
        target(f"POST ≥ 80% of the bound, Kaleyra {latency} ms (known users)", post_target)
    target("Idle RSS < 30 MB", lambda r: (f"{r['rss_idle_kb'] / 1024:.1f} MB",
                                          r["rss_idle_kb"] < 30 * 1024))
    target("Start-up < 300 ms (SQLite)",
           lambda r: (f"{r['ready_ms_fresh']:.0f} ms",
                      r["ready_ms_fresh"] < 300 if r["backend"] == "sqlite" else None))
    target(f"Join latency at {args.rows_large:,} rows within 1.5× of {args.rows_small:,} "
           "(p50 and p99)",
           lambda r: ("p50 {:.2f}×, p99 {:.2f}×".format(*growth(r, small)[:2]),
                      max(growth(r, small)[:2]) <= 1.5))

    def agenda_growth(r):
        a, b = r["agenda"]["latency_us"], r["large_agenda"]["latency_us"]
        return b["p50"] / a["p50"], b["p99"] / a["p99"]
    target(f"Agenda first page at {args.rows_large:,} rows within 1.5× of {args.rows_small:,} "
           "(p99)",
           lambda r: ("p50 {:.2f}×, p99 {:.2f}×".format(*agenda_growth(r)),
                      agenda_growth(r)[1] <= 1.5))
    target(f"Agenda ≥ 50% of the join's throughput ({args.rows_large:,} rows)",
           lambda r: (f"{r['large_agenda']['rps'] / r['large_join']['rps']:.0%}",
                      r["large_agenda"]["rps"] >= 0.5 * r["large_join"]["rps"]))

    def table(rs):
        head = "| | " + " | ".join(BACKEND_NAMES[c] for c in cols) + " |\n"
        head += "|---|" + "---|" * len(cols) + "\n"
        return head + "".join(f"| {label} | " + " | ".join(cells) + " |\n" for label, cells in rs)

    title = started.strftime("%Y-%m-%d %H:%M UTC")
    kind = "quick (smoke) run" if args.quick else "full run"
    out = [f"### {title} — {args.label or kind}\n"]
    if args.note:
        out.append(f"{args.note}\n")
    if RECEIVER is not None:
        out.append(f"Events on (`--events`): `EVENTS_WEBHOOK_URL` set, a receiver on loopback "
                   f"answering 204 at once; {RECEIVER.received:,} events received.\n")
    out.append(
        f"- Command: `{shlex.join(['bench/run'] + shown_argv(args.argv))}` "
        f"({elapsed / 60:.1f} min)\n"
        f"- Code: {code_line(args, info)}\n"
        f"- Machine: {info.get('nproc')} CPUs ({info.get('cpu')}), {info.get('memory')} memory, "
        f"Linux {info.get('kernel')}, {info.get('rustc')}; load average at start {info.get('load')}\n"
        f"- Load: {info.get('wrk', '').split(' [')[0]}, {args.threads} threads, {args.connections} connections, "
        f"{args.duration:g} s per measure after {args.warmup:g} s of warm-up; the simulator, "
        f"the service, the database and wrk share the machine\n"
    )
    out.append("\n" + table(rows) + "\n")
    out.append("Targets:\n\n" + table(t_rows) + "\n")
    details = []
    for r in results:
        for latency, lat in r["latencies"].items():
            for key in ("join", "post_known", "post_new"):
                bd = lat[key].get("kaleyra_breakdown")
                if bd:
                    calls = ", ".join(f"{k} {v}" for k, v in bd.items())
                    details.append(f"{BACKEND_NAMES[r['backend']]}, {latency} ms, {key}: "
                                   f"{lat[key]['requests']:,} requests → {calls}")
    if details:
        out.append("<details><summary>Kaleyra calls by route (measured runs)</summary>\n\n"
                   + "".join(f"- {d}\n" for d in details) + "\n</details>\n")
    rss = []
    for r in results:
        phases = []
        for latency, lat in r["latencies"].items():
            for key in ("healthz", "join", "post_known", "post_new"):
                kb = lat[key].get("rss_after_kb", {})
                phases.append(f"{latency} ms {key} {kb.get('VmRSS', 0) / 1024:.0f}/"
                              f"{kb.get('VmHWM', 0) / 1024:.0f}")
        rss.append(f"{BACKEND_NAMES[r['backend']]}: " + ", ".join(phases))
    out.append("<details><summary>Service RSS / high-water mark after each phase, MB "
               "(first instance, in order)</summary>\n\n"
               + "".join(f"- {line}\n" for line in rss) + "\n</details>\n")
    return "\n".join(out) + "\n"


def code_line(args, info: dict) -> str:
    """The commit of this tree, or, with another build's binaries (--bin-dir), their
    directory: the tree's commit says nothing about them."""
    if getattr(args, "other_build", False):
        return (f"the binaries in `{args.bin_dir}` (another build; this tree is at "
                f"{info.get('commit')})")
    return str(info.get("commit"))


def growth(r: dict, small_latency: int) -> tuple[float, float, float]:
    """Large-database join over small-database join: p50, p99, throughput."""
    a, b = r["latencies"][small_latency]["join"], r["large_join"]
    return (b["latency_us"]["p50"] / a["latency_us"]["p50"],
            b["latency_us"]["p99"] / a["latency_us"]["p99"], b["rps"] / a["rps"])


def shown_argv(argv: list[str]) -> list[str]:
    """The options that change the figures (not --label, --note, --keep, ...)."""
    hidden_with_value = {"--label", "--note", "--bin-dir"}
    hidden = {"--keep", "--write", "--no-write", "--skip-build"}
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in hidden_with_value:
            skip = "=" not in a
            continue
        if name not in hidden:
            out.append(a)
    return out


def l_s(latency_ms: int) -> str:
    return f"{latency_ms / 1000:g} s"


def day_header(day: str) -> str:
    """The top of a new day's file in bench/history/."""
    return (f"# Benchmarks of {day}\n\n"
            "Runs of `bench/run` started on this day (UTC), oldest first: each section as the harness\n"
            "wrote it, with what was read from it added by hand. How to run and read them:\n"
            "[BENCHMARKS.md](../../BENCHMARKS.md); every day: [README.md](README.md).\n")


def anchor(heading: str) -> str:
    """The link anchor a Markdown renderer gives `heading` (lower case, punctuation dropped,
    spaces as hyphens)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def append(path: Path, text: str, header: str) -> None:
    old = path.read_text() if path.exists() else header
    if not old.endswith("\n"):
        old += "\n"
    path.write_text(old + text)


def write_history(section: str, started: dt.datetime) -> Path:
    """Appends `section` to bench/history/<UTC date of `started`>.md (made if missing) and a
    line linking to it to bench/history/README.md's list of runs."""
    day = started.strftime("%Y-%m-%d")
    path = HISTORY / f"{day}.md"
    HISTORY.mkdir(parents=True, exist_ok=True)
    title = section.split("\n", 1)[0].lstrip("#").strip()
    # A heading met before in the file gets a numbered anchor (-1, -2, ...), as renderers do.
    earlier = path.read_text().split("\n") if path.exists() else []
    seen = sum(1 for line in earlier
               if line.startswith("### ") and anchor(line[4:]) == anchor(title))
    link = anchor(title) + (f"-{seen}" if seen else "")
    append(path, "\n" + section, day_header(day))
    append(HISTORY / "README.md", f"- [{title}]({day}.md#{link})\n",
           "# Benchmark history\n\n## Runs\n\n")
    return path


# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str]):
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmarks telecons on SQLite and PostgreSQL with the Kaleyra simulator "
                    "(see BENCHMARKS.md).")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: short measures, small databases; checks that the harness "
                        "works, never the figures (writes nothing to bench/history/ unless "
                        "--write)")
    p.add_argument("--duration", type=int, help="seconds per measure (10; quick 2)")
    p.add_argument("--warmup", type=int, help="seconds of warm-up before each measure, 0 for "
                   "none (2; quick 1)")
    p.add_argument("--connections", type=int, default=64, help="concurrent connections (64)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    p.add_argument("--latencies", default="0,50",
                   help="Kaleyra latencies in ms, comma separated; the first one is also used "
                        "for the large-database and info-log measures (0,50)")
    p.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    p.add_argument("--rows-small", type=int, help="teleconsultations stored for the first "
                   "GET measure (1000; quick 200)")
    p.add_argument("--rows-large", type=int, help="teleconsultations stored for the second "
                   "GET measure (1000000; quick 2000)")
    p.add_argument("--targets", type=int, default=8,
                   help="teleconsultations booked through the API that the GETs target (8)")
    p.add_argument("--log-level", default="warn", help="LOG_LEVEL of the measured service (warn)")
    p.add_argument("--no-info-log", dest="info_log", action="store_false",
                   help="skip the measure with LOG_LEVEL=info")
    p.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432",
                   help="PostgreSQL server (trust auth); a fresh database is made and dropped")
    p.add_argument("--label", default="", help="heading of the section written to "
                   "bench/history/<UTC date>.md")
    p.add_argument("--note", default="", help="a sentence written under the heading")
    p.add_argument("--write", dest="write", action="store_true", default=None,
                   help="append the section to bench/history/<UTC date>.md and a line to "
                        "bench/history/README.md (default for full runs)")
    p.add_argument("--no-write", dest="write", action="store_false",
                   help="only print the section")
    p.add_argument("--events", action="store_true",
                   help="the services send their events (EVENTS_WEBHOOK_URL) to a receiver "
                        "of the harness that answers 204 at once")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, wrk output)")
    p.add_argument("--skip-build", action="store_true", help="(bench/run) use the binaries as built")
    p.add_argument("--instructions", action="store_true",
                   help="instead of the benchmarks: user-space instructions per join and per "
                        "healthz, counted by valgrind (~1 min; printed, not written)")
    p.add_argument("--drain", action="store_true",
                   help="instead of the benchmarks: a backlog of due rooms drained at Kaleyra's "
                        "pace, for each --drain-rates (and at the last rate: with 10%% of creation "
                        "answers lost, and under the join's and bookings' load); ~6 min a "
                        "backend")
    p.add_argument("--drain-backlog", type=int, default=10_000,
                   help="due rooms in the drain's backlog (10000)")
    p.add_argument("--drain-rates", default="50,500",
                   help="Kaleyra's allowed requests per second in the drains (50,500)")
    p.add_argument("--drain-join-rate", type=int, default=5000,
                   help="the join's pace (req/s over --connections) in the drain under load "
                        "(5000)")
    p.add_argument("--drain-post-connections", type=int, default=4,
                   help="connections booking (closed loop, known users) in the drain under "
                        "load (4)")
    p.add_argument("--no-drain-load", dest="drain_load", action="store_false",
                   help="skip the drain under the join's and bookings' load (at the last "
                        "--drain-rates)")
    p.add_argument("--drain-load-only", action="store_true",
                   help="only the drain under the join's and bookings' load (at the last "
                        "--drain-rates): what the worker leaves the requests")
    p.add_argument("--bin-dir", type=Path, default=None,
                   help="measure the telecons and kaleyra-sim binaries in this directory "
                        "(another build's), full run or --instructions; bench/run then builds "
                        "nothing, and the section names the directory (default: "
                        "$CARGO_TARGET_DIR/release, as bench/run builds it)")
    args = p.parse_args(argv)
    args.argv = list(argv)
    built = Path(os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))) / "release"
    if args.bin_dir is None:
        args.bin_dir = built
    args.other_build = args.bin_dir.resolve() != built.resolve()
    if args.duration is None:
        args.duration = 2 if args.quick else 10
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.duration < 1 or args.warmup < 0:
        p.error("--duration must be at least 1 s and --warmup at least 0")
    if args.rows_small is None:
        args.rows_small = 200 if args.quick else 1000
    if args.rows_large is None:
        args.rows_large = 2000 if args.quick else 1_000_000
    if args.write is None:
        args.write = not args.quick
    args.latencies = [int(x) for x in args.latencies.split(",") if x.strip()]
    args.drain_rates = [int(x) for x in args.drain_rates.split(",") if x.strip()]
    if args.drain and (not args.drain_rates or min(args.drain_rates) < 1
                       or args.drain_join_rate < 1 or args.drain_post_connections < 1):
        p.error("--drain-rates, --drain-join-rate and --drain-post-connections must be "
                "at least 1")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in args.backends:
        if b not in BACKEND_NAMES:
            p.error(f"unknown backend {b!r}")
    if not args.latencies:
        p.error("--latencies is empty")
    if args.rows_large < args.rows_small:
        p.error("--rows-large must be at least --rows-small")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    for exe in ("telecons", "kaleyra-sim"):
        if not (args.bin_dir / exe).exists():
            log(f"{args.bin_dir / exe} is missing: run bench/run (it builds them)")
            return 2
    for tool in ("wrk", "sqlite3", "psql") + (
            ("valgrind", "callgrind_control") if args.instructions else ()):
        if shutil.which(tool) is None:
            log(f"{tool} is missing: run bench/run (it installs it)")
            return 2
    if args.events:
        global RECEIVER
        RECEIVER = EventReceiver()
    workdir = Path(tempfile.mkdtemp(prefix="telecons-bench-", dir="/var/tmp"))
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    info = machine()
    log(f"work directory {workdir}; {info.get('nproc')} CPUs, load average {info.get('load')}")
    results = []
    code = 0
    try:
        if args.instructions:
            print("\n".join(count_instructions(args, workdir)))
            return code
        for backend in args.backends:
            results.append((drain_backend if args.drain else run_backend)(args, backend, workdir))
        if args.drain:
            section = drain_report(args, results, info, started)
        else:
            section = report(args, results, info, started, time.perf_counter() - t0)
        (workdir / "results.json").write_text(json.dumps(
            {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
             "results": results}, indent=2, default=str))
        print()
        print(section)
        if args.write:
            log(f"appended to {write_history(section, started)}; update BENCHMARKS.md's "
                "latest result by hand")
        log(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    except HarnessError as err:
        log(f"FAILED: {err}")
        args.keep = True
        code = 1
    except KeyboardInterrupt as err:
        log(f"interrupted ({err})")
        code = 130
    finally:
        PROCS.stop_all()
        if args.keep:
            log(f"kept {workdir} (logs, wrk output, results.json)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
