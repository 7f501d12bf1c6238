#!/usr/bin/env python3
"""capgate load harness: one command, everything on 127.0.0.1.

    python3 benches/load/harness.py [--duration 10] [--rounds 3] [--soak 600]

It builds the release binaries, installs cmake (the build needs it), wrk,
h2load, nginx and valgrind with apt when they are missing, starts the peers
and runs five modes (`--modes`; two more, syscalls and phases, on request),
then prints one markdown report and writes it to benches/load/RESULTS.md (a
run without all five is printed only).

Targets:
  direct       the upstream itself (benches/load/upstream.rs, hyper)
  nginx        nginx as a plain reverse proxy (its own generated config)
  passthrough  a bare pingora proxy built from benches/load/passthrough.rs
  hyper-proxy  a bare proxy on tokio and hyper, no pingora
               (benches/load/hyper_proxy.rs): what a proxy on the same Rust
               stack pays without pingora
  capgate-reused  capgate, full pipeline, one token reused (replay protection off)
  capgate-reused-noaudit  the same with the audit trail off (audit cost)
  capgate-fresh   capgate, full pipeline, a fresh token per request
                  (replay protection on): the worst case

capgate runs with the UCAN chain, Cedar, credential injection, the response
sanitizer and the audit trail all on, logging at warn.

Modes:
  throughput  wrk, closed loop, interleaved round by round; per target the
              median over rounds of req/s, p50/p99/p99.9, CPU seconds per 1k
              requests (utime+stime of the server's processes from /proc)
              and its user and system parts per request, peak RSS, ratios
              to nginx and to direct, and the audit's cost.
  latency     a fixed moderate rate (--rate, default 2000 req/s) from
              benches/load/rate.rs; p50/p99 and what each proxy adds over
              direct.
  memory      --idle (default 1000) idle keep-alive connections, then wrk on
              top; RSS before, with the idle connections, after the load.
  http2       h2load, HTTP/2 with prior knowledge (h2c), --connections in
              flight as --h2-streams concurrent streams on each of
              --connections / --h2-streams connections, interleaved round by
              round: direct, nginx (its own h2c listener), the passthrough,
              the hyper proxy and capgate with a reused token; then each
              target over HTTP/1.1 from h2load too (--h1, --connections in
              flight), for an HTTP/2-to-HTTP/1.1 ratio measured with one
              client. h2load sends the same headers on every request, so
              there is no fresh-token case here.
  instructions  valgrind --tool=callgrind: instructions per request of nginx
              (one process: master_process off, one worker), the passthrough,
              the hyper proxy and capgate (reused token, audit off and on; a
              fresh token per request, replay protection on), from sequential
              requests on one keep-alive connection; each target runs twice
              (--cg-requests and 3x as many) and the difference is divided by
              the extra requests, so start-up and shutdown cancel. Instruction
              counts hardly depend on what else the machine is doing: the same
              binary gives the same count to within about 1 % (timers and
              thread scheduling differ from run to run), where throughput
              rounds swing by 20 % and more. It does not count time spent in
              the kernel, and valgrind hides SHA-NI (SHA-256 runs in
              software).
  syscalls    (not run by default: `--modes syscalls`; needs perf and
              tracepoints, perf_event_paranoid <= 2 as root) wrk against
              nginx, the passthrough, the hyper proxy and capgate with a
              reused token (audit off and on), with `perf stat` counting the
              server processes' system calls by name, context switches and
              wake-ups over the wrk run, divided by wrk's requests: which
              calls each proxy makes per request, and how often its threads
              sleep and wake.
  phases      (not run by default: `--modes phases`; needs perf, as syscalls)
              bench-rate at --rate against nginx, the passthrough, the hyper
              proxy and capgate (reused token with the audit off and on, and a
              fresh token per request), with `perf record` on the server's
              socket system calls; each request is cut into the proxy's own
              work before its upstream write, the wait for the upstream's
              reply, and its own work after reading it (phase_split): where
              each proxy's added latency goes; also each proxy's dispatch,
              from epoll_wait returning to its first read that gets bytes.
  --soak N    capgate with fresh tokens at --soak-rate for N seconds, RSS
              sampled every 10 s (600 for the 10-minute soak; off by default).

Every process it starts is stopped before it exits.
"""
import argparse, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time, json, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "benches", "load")
PORTS = {"upstream": 18081, "nginx": 18090, "passthrough": 18091, "capgate": 18092, "capgate_admin": 18093, "nginx_h2c": 18094, "passthrough_cg": 18095, "hyper_proxy": 18096, "nginx_cg": 18097, "hyper_proxy_cg": 18098}
TICK = os.sysconf("SC_CLK_TCK")
procs = []


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools(perf=False):
    tools = (("cmake", "cmake"), ("wrk", "wrk"), ("nghttp2-client", "h2load"), ("nginx", "nginx"), ("valgrind", "valgrind")) + ((("linux-perf", "perf"),) if perf else ())
    missing = [p for p, b in tools if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(sudo + ["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL)
        sh(sudo + ["apt-get", "install", "-y", "-qq"] + missing, stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def build():
    sh(["cargo", "build", "--release", "--bin", "capgate", "--example", "bench-upstream", "--example", "bench-passthrough", "--example", "bench-hyper-proxy", "--example", "bench-tokens", "--example", "bench-rate"], cwd=ROOT)
    rel = os.path.join(ROOT, "target", "release")
    return {"capgate": os.path.join(rel, "capgate"), "upstream": os.path.join(rel, "examples", "bench-upstream"),
            "passthrough": os.path.join(rel, "examples", "bench-passthrough"), "hyper-proxy": os.path.join(rel, "examples", "bench-hyper-proxy"), "tokens": os.path.join(rel, "examples", "bench-tokens"),
            "rate": os.path.join(rel, "examples", "bench-rate")}


def start(cmd, env=None, log=None):
    p = subprocess.Popen(cmd, stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL, env=env, start_new_session=True)
    procs.append(p)
    return p


def wait_port(port, timeout=20):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def stop_all():
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def pids_of(root_pid):
    """The process and its children (nginx workers)."""
    out = [root_pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(root_pid)], capture_output=True, text=True).stdout.split()
        out += [int(k) for k in kids]
    except FileNotFoundError:
        pass
    return out


def cpu_ticks(pids):
    """(user, system) clock ticks of the processes."""
    user = system = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except OSError:
            pass
    return user, system


def rss_kib(pids, key="VmHWM"):
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def wrk(port, script, args, duration, connections):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, f"http://127.0.0.1:{port}/", "--"] + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    g = lambda k: int(re.search(rf"{k} (\d+)", out).group(1)) / 1000.0
    return {"rps": rps, "requests": reqs, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errs.group(1) if errs else "", "p50": g("P50_US"), "p99": g("P99_US"), "p999": g("P999_US")}


def h2load(port, path, headers, duration, connections, streams, logfile, h1=False):
    """HTTP/2 with prior knowledge (or HTTP/1.1 with `h1`, one request in
    flight per connection); latency percentiles from h2load's per-request log."""
    if os.path.exists(logfile):
        os.remove(logfile)  # h2load appends to its log file
    cmd = ["h2load", "-t2", f"-c{connections}", f"-m{streams}", f"-D{duration}", f"--log-file={logfile}"] + (["--h1"] if h1 else [])
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))
    done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", out).group(1))
    codes = re.search(r"status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    failed = re.search(r"(\d+) errored, (\d+) timeout", out)
    # Columns: start (µs since the epoch), status (-1: failed), µs to the end of the response.
    lat = sorted(int(f[2]) for f in (line.split("\t") for line in open(logfile)) if len(f) >= 3 and f[1] != "-1")
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0 if lat else float("nan")
    non2xx = sum(int(x) for x in codes.groups()) + sum(int(x) for x in failed.groups())
    return {"rps": rps, "requests": done, "non2xx": non2xx, "p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999)}


H2C_SERVER = f"""server {{
    # HTTP/2 with prior knowledge (nginx 1.22: `http2` on a plaintext listen).
    listen 127.0.0.1:{PORTS['nginx_h2c']} http2;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}"""


def nginx_conf(tmp, callgrind=False):
    """The plain reverse proxy: two workers, HTTP/1.1 and h2c listeners. With
    `callgrind`, one process (no master) and only an HTTP/1.1 listener on its
    own port, so one callgrind output holds all of nginx's work."""
    processes = "worker_processes 1;\nmaster_process off;" if callgrind else "worker_processes 2;"
    name = "nginx-cg" if callgrind else "nginx"
    conf = f"""
{processes}
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  upstream up {{ server 127.0.0.1:{PORTS['upstream']}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx_cg' if callgrind else 'nginx']};
    keepalive_requests 1000000;
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
  {"" if callgrind else H2C_SERVER}
}}
"""
    path = os.path.join(tmp, f"{name}.conf")
    open(path, "w").write(conf)
    return path


def capgate_conf(tmp, replay, audit=True):
    up = f"http://127.0.0.1:{PORTS['upstream']}"
    conf = f"""
[server]
listen = "127.0.0.1:{PORTS['capgate']}"
admin_listen = "127.0.0.1:{PORTS['capgate_admin']}"
threads = 2
identity_key = "gateway.pem"
[ucan]
max_lifetime_secs = 60
replay_protection = {str(replay).lower()}
[[tenants]]
id = "bench"
roots = []
root_keys = ["root.pem"]
[[routes]]
name = "up"
prefix = "/up/"
upstream = "{up}"
credential = "up"
[vault]
path = "vault.json"
[policies]
dir = "{ROOT}/policies"
[audit]
enabled = {str(audit).lower()}
dir = "audit-{'fresh' if replay else 'reused'}"
signing_key = "audit.pem"
[state]
path = "state.json"
"""
    path = os.path.join(tmp, f"capgate-{'fresh' if replay else 'reused'}{'' if audit else '-noaudit'}.toml")
    open(path, "w").write(conf)
    return path


class Bench:
    """The servers, keys and configs one harness run shares across modes."""

    def __init__(self, a, bins, tmp):
        self.a, self.bins, self.tmp = a, bins, tmp
        self.env = {**os.environ, "CAPGATE_VAULT_KEY": subprocess.run([bins["capgate"], "vault", "keygen"], capture_output=True, text=True, check=True).stdout.strip(), "RUST_LOG": "warn"}
        for k in ("gateway", "root", "agent", "audit"):
            sh([bins["capgate"], "keygen", "--out", os.path.join(tmp, f"{k}.pem")], stdout=subprocess.DEVNULL)
        self.confs = {
            "capgate-reused": capgate_conf(tmp, False),
            "capgate-reused-noaudit": capgate_conf(tmp, False, audit=False),
            "capgate-fresh": capgate_conf(tmp, True),
        }
        sh([bins["capgate"], "vault", "put", "--config", self.confs["capgate-reused"], "--tenant", "bench", "--name", "up"], input=b"bench-upstream-credential\n", env=self.env, stdout=subprocess.DEVNULL)
        self.log = open(os.path.join(tmp, "servers.log"), "wb")
        self.targets = {}
        self.targets["direct"] = (start([bins["upstream"], str(PORTS["upstream"])], log=self.log), PORTS["upstream"])
        wait_port(PORTS["upstream"])
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        self.targets["nginx"] = (start([nginx_bin, "-c", nginx_conf(tmp), "-p", tmp], log=self.log), PORTS["nginx"])
        self.targets["passthrough"] = (start([bins["passthrough"], str(PORTS["passthrough"]), str(PORTS["upstream"]), "2"], log=self.log), PORTS["passthrough"])
        self.targets["hyper-proxy"] = (start([bins["hyper-proxy"], str(PORTS["hyper_proxy"]), str(PORTS["upstream"])], log=self.log), PORTS["hyper_proxy"])
        for name in ("nginx", "passthrough", "hyper-proxy"):
            wait_port(self.targets[name][1])
        self.up_url = f"http://127.0.0.1:{PORTS['upstream']}"
        self.keys = [os.path.join(tmp, f"{k}.pem") for k in ("root", "agent", "gateway")]

    def path(self, name):
        return "/up/bench" if name.startswith("capgate") else "/bench"

    def server(self, name):
        """(process, port) for a target; capgate targets start fresh each time."""
        if name.startswith("capgate"):
            p = start([self.bins["capgate"], "serve", "--config", self.confs[name]], env=self.env, log=self.log)
            wait_port(PORTS["capgate"])
            return p, PORTS["capgate"]
        return self.targets[name]

    def done(self, name, p):
        if name.startswith("capgate"):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=20)

    def tokens(self, n):
        tokfile = os.path.join(self.tmp, "tokens.txt")
        sh([self.bins["tokens"]] + self.keys + [self.up_url, str(n), tokfile])
        return tokfile

    def rate(self, name, port, rate, secs, conns=16):
        mode = "none" if not name.startswith("capgate") else ("fresh" if name == "capgate-fresh" else "reused")
        cmd = [self.bins["rate"], f"127.0.0.1:{port}", self.path(name), str(rate), str(secs), str(conns), mode]
        if mode != "none":
            cmd += self.keys + [self.up_url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 120, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])


def medians(results):
    return {k: {m: statistics.median(x[m] for x in v) for m in ("rps", "p50", "p99", "p999", "cpu_s_per_1k", "rss_mib", "non2xx", "user_us", "sys_us") if m in v[0]} for k, v in results.items()}


def ratio(med, m, peer):
    return f"{m['rps'] / med[peer]['rps']:.2f}" if peer in med else "–"


THROUGHPUT_TARGETS = ("direct", "nginx", "passthrough", "hyper-proxy", "capgate-reused", "capgate-reused-noaudit", "capgate-fresh")


def throughput(b):
    a = b.a
    pool = a.pool or 20000 * a.duration
    results = {k: [] for k in THROUGHPUT_TARGETS if not a.only or k in a.only}
    for rnd in range(a.rounds):
        for name in results:
            p, port = b.server(name)
            if name.startswith("capgate"):
                replay = name == "capgate-fresh"
                tokfile = b.tokens(pool if replay else 1)
                script, args = (os.path.join(HERE, "wrk_tokens.lua"), [tokfile, "2", b.path(name)]) if replay else (os.path.join(HERE, "wrk_plain.lua"), [tokfile, b.path(name)])
            else:
                script, args = os.path.join(HERE, "wrk_plain.lua"), ["-", b.path(name)]
            pids = pids_of(p.pid)
            u0, s0 = cpu_ticks(pids)
            r = wrk(port, script, args, a.duration, a.connections)
            u1, s1 = cpu_ticks(pids)
            per_req = lambda ticks: ticks / TICK / max(r["requests"], 1)
            r["cpu_s_per_1k"] = per_req(u1 - u0 + s1 - s0) * 1000
            r["user_us"], r["sys_us"] = per_req(u1 - u0) * 1e6, per_req(s1 - s0) * 1e6
            r["rss_mib"] = rss_kib(pids) / 1024
            results[name].append(r)
            print(f"round {rnd + 1} {name:22s} {r['rps']:10.0f} req/s  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  non-2xx {r['non2xx']}", flush=True)
            b.done(name, p)
    med = medians(results)
    lines = [
        f"**Throughput**: wrk -t2 -c{a.connections} -d{a.duration}s, {a.rounds} rounds interleaved, medians.",
        "",
        "| target | req/s | × nginx | × direct | p50 ms | p99 ms | p99.9 ms | CPU s / 1k req | user µs / req | system µs / req | peak RSS MiB | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, m in med.items():
        lines.append(f"| {k} | {m['rps']:.0f} | {ratio(med, m, 'nginx')} | {ratio(med, m, 'direct')} | {m['p50']:.2f} | {m['p99']:.2f} | {m['p999']:.2f} | {m['cpu_s_per_1k']:.3f} | {m['user_us']:.1f} | {m['sys_us']:.1f} | {m['rss_mib']:.1f} | {m['non2xx']:.0f} |")
    if "capgate-reused" in med and "capgate-reused-noaudit" in med:
        audit_cost = 1 - med["capgate-reused"]["rps"] / med["capgate-reused-noaudit"]["rps"]
        # The two run back to back in each round, so the per-round ratio is
        # less exposed to the machine drifting between rounds.
        per_round = sorted((1 - on["rps"] / off["rps"]) * 100 for on, off in zip(results["capgate-reused"], results["capgate-reused-noaudit"]))
        lines += ["", f"Audit trail cost (capgate-reused vs capgate-reused-noaudit): {audit_cost * 100:.1f} % of throughput from the medians; "
                  f"per round {statistics.median(per_round):.1f} % median ({', '.join(f'{c:.1f}' for c in per_round)})."]
    return lines


def http2(b):
    """h2load over h2c against the same targets, and the same targets over
    HTTP/1.1 from h2load (`--h1`, same requests in flight) for the ratio;
    reused token for capgate."""
    a = b.a
    streams = a.h2_streams
    conns = a.connections // streams
    names = ("direct", "nginx", "passthrough", "hyper-proxy", "capgate-reused")
    results = {k: [] for k in names}
    h1 = {k: [] for k in names}
    for rnd in range(a.rounds):
        for name in names:
            p, port = b.server(name)
            headers = token_headers(b.tokens(1)) if name.startswith("capgate") else []
            pids = pids_of(p.pid)
            for proto, out in (("h2", results), ("h1", h1)):
                t0 = sum(cpu_ticks(pids))
                if proto == "h2":
                    r = h2load(PORTS["nginx_h2c"] if name == "nginx" else port, b.path(name), headers, a.duration, conns, streams, os.path.join(b.tmp, "h2load.log"))
                else:
                    r = h2load(port, b.path(name), headers, a.duration, a.connections, 1, os.path.join(b.tmp, "h2load.log"), h1=True)
                r["cpu_s_per_1k"] = (sum(cpu_ticks(pids)) - t0) / TICK / max(r["requests"], 1) * 1000
                r["rss_mib"] = rss_kib(pids) / 1024
                out[name].append(r)
                print(f"round {rnd + 1} {proto} {name:19s} {r['rps']:10.0f} req/s  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  non-2xx {r['non2xx']}", flush=True)
            b.done(name, p)
    med, med1 = medians(results), medians(h1)
    lines = [
        f"**HTTP/2 (h2c, prior knowledge)**: h2load -t2 -c{conns} -m{streams} -D{a.duration} ({conns * streams} requests in flight), {a.rounds} rounds interleaved, medians; latency from h2load's per-request log. The last two columns are the same target over HTTP/1.1 from the same client (h2load --h1 -c{a.connections}, {a.connections} requests in flight), run right after. capgate with a reused token (h2load repeats the same headers, so there is no fresh-token case).",
        "",
        "| target | req/s | × nginx | × direct | p50 ms | p99 ms | p99.9 ms | CPU s / 1k req | peak RSS MiB | non-2xx | HTTP/1.1 req/s | h2 × HTTP/1.1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, m in med.items():
        lines.append(f"| {k} | {m['rps']:.0f} | {ratio(med, m, 'nginx')} | {ratio(med, m, 'direct')} | {m['p50']:.2f} | {m['p99']:.2f} | {m['p999']:.2f} | {m['cpu_s_per_1k']:.3f} | {m['rss_mib']:.1f} | {m['non2xx']:.0f} | {med1[k]['rps']:.0f} | {m['rps'] / med1[k]['rps']:.2f} |")
    return lines


def latency(b):
    a = b.a
    names = ("direct", "nginx", "passthrough", "hyper-proxy", "capgate-reused", "capgate-fresh")
    results = {k: [] for k in names}
    for rnd in range(a.rounds):
        for name in names:
            p, port = b.server(name)
            r = b.rate(name, port, a.rate, a.duration)
            results[name].append(r)
            print(f"round {rnd + 1} {name:22s} at {a.rate} req/s: p50 {r['p50_us']} us  p99 {r['p99_us']} us  errors {r['errors']}", flush=True)
            b.done(name, p)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("p50_us", "p99_us", "p999_us", "errors", "rps")} for k, v in results.items()}
    d = med["direct"]
    lines = [
        f"**Latency at a fixed rate**: {a.rate} req/s over 16 keep-alive connections for {a.duration}s (benches/load/rate.rs, coordinated omission accounted for), {a.rounds} rounds, medians. Added = target − direct.",
        "",
        "| target | p50 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, m in med.items():
        lines.append(f"| {k} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | {m['p999_us']:.0f} | {m['p50_us'] - d['p50_us']:.0f} | {m['p99_us'] - d['p99_us']:.0f} | {m['errors']:.0f} |")
    return lines


def token_headers(tokfile):
    """The two request headers of a reused token from bench-tokens' file
    (its first line is the delegation, its second the invocation)."""
    with open(tokfile) as f:
        ucans, tok = f.readline().strip(), f.readline().strip()
    return [f"authorization: Bearer {tok}", f"ucans: {ucans}"]


def idle_connections(port, n, path, tokfile):
    """Open n keep-alive connections, one complete request each, left idle."""
    import socket
    headers = "".join(f"{h}\r\n" for h in token_headers(tokfile)) if tokfile else ""
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()
    socks = []
    for _ in range(n):
        # One request at a time, so what is measured is idle connections,
        # not a burst of n concurrent requests.
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(req)
        data = b""
        # Read the response (small; chunked or with a length).
        while not (b"\r\n0\r\n\r\n" in data or (b"\r\n\r\n" in data and b"content-length" in data.lower() and data.endswith(b"}"))):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"an idle-connection request failed on port {port}: {data[:80]!r}")
        socks.append(s)
    return socks


def still_open(socks):
    import socket
    n = 0
    for s in socks:
        try:
            s.setblocking(False)
            n += 0 if s.recv(1, socket.MSG_PEEK) == b"" else 1
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def memory(b):
    a = b.a
    lines = [
        f"**Memory with {a.idle} idle keep-alive connections** (each served one request first), then wrk -t2 -c{a.connections} -d{a.duration}s on top.",
        "",
        "| target | RSS before MiB | RSS with idle conns MiB | RSS after load MiB | peak RSS MiB | req/s under load | idle conns still open |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("nginx", "passthrough", "hyper-proxy", "capgate-reused"):
        p, port = b.server(name)
        tokfile = b.tokens(1) if name.startswith("capgate") else None
        pids = pids_of(p.pid)
        before = rss_kib(pids, "VmRSS") / 1024
        socks = idle_connections(port, a.idle, b.path(name), tokfile)
        time.sleep(1)
        with_idle = rss_kib(pids, "VmRSS") / 1024
        script, args = os.path.join(HERE, "wrk_plain.lua"), [tokfile or "-", b.path(name)]
        r = wrk(port, script, args, a.duration, a.connections)
        after = rss_kib(pids, "VmRSS") / 1024
        peak = rss_kib(pids) / 1024
        open_n = still_open(socks)
        for s in socks:
            s.close()
        print(f"{name:22s} RSS {before:.1f} -> {with_idle:.1f} -> {after:.1f} MiB (peak {peak:.1f}), {r['rps']:.0f} req/s, {open_n}/{a.idle} idle open", flush=True)
        lines.append(f"| {name} | {before:.1f} | {with_idle:.1f} | {after:.1f} | {peak:.1f} | {r['rps']:.0f} | {open_n} |")
        b.done(name, p)
    return lines


def soak(b):
    a = b.a
    name = "capgate-fresh"
    p, port = b.server(name)
    pids = pids_of(p.pid)
    out = {}

    def run():
        out["r"] = b.rate(name, port, a.soak_rate, a.soak)

    import threading
    t = threading.Thread(target=run)
    t.start()
    samples = []
    t0 = time.time()
    while t.is_alive():
        time.sleep(10)
        samples.append((time.time() - t0, rss_kib(pids, "VmRSS") / 1024))
        print(f"soak {samples[-1][0]:6.0f}s RSS {samples[-1][1]:.1f} MiB", flush=True)
    t.join()
    b.done(name, p)
    r = out.get("r", {})
    first, last = samples[0][1], samples[-1][1]
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    return [
        f"**Soak**: capgate, full pipeline, a fresh token per request (replay protection on), {a.soak_rate} req/s for {a.soak} s.",
        "",
        "| RSS at 10 s MiB | RSS at end MiB | max RSS MiB | RSS change over the second half MiB | requests | errors | p50 µs | p99 µs |",
        "|---|---|---|---|---|---|---|---|",
        f"| {first:.1f} | {last:.1f} | {max(s[1] for s in samples):.1f} | {half[-1][1] - half[0][1]:+.1f} | {r.get('requests', 0)} | {r.get('errors', 0)} | {r.get('p50_us', 0)} | {r.get('p99_us', 0)} |",
    ]


def callgrind_total(path):
    """Instructions of a whole callgrind run (all threads: one output file)."""
    for line in open(path):
        m = re.match(r"(?:summary|totals):\s+(\d+)", line)
        if m:
            return int(m.group(1))
    raise SystemExit(f"{path}: no callgrind totals")


# The allocator's entry points, by the name callgrind gives them: glibc's
# (nginx, the passthrough, the hyper proxy, the upstream) and mimalloc's
# (capgate's global allocator; Rust's `GlobalAlloc` calls the `_aligned`
# forms).
ALLOCATE = {"malloc", "calloc", "posix_memalign", "memalign", "aligned_alloc", "valloc",
            "mi_malloc", "mi_zalloc", "mi_calloc", "mi_malloc_aligned", "mi_zalloc_aligned"}
REALLOCATE = {"realloc", "reallocarray", "mi_realloc", "mi_realloc_aligned"}
FREE = {"free", "cfree", "mi_free", "mi_free_size", "mi_free_aligned", "mi_free_size_aligned"}
# Calls made inside an allocator (realloc freeing the old block, say) are not
# the program's.
ALLOCATOR_INTERNAL = re.compile(r"^(_?mi_|_int_|__libc_|_mid_|__posix_memalign|sysmalloc|tcache|malloc|calloc|realloc|free|cfree)")


def callgrind_calls(lines):
    """(caller, callee, calls, inclusive instructions) for each call record
    of a callgrind output: `fn=` names the caller, `cfn=` the callee,
    `calls=` the count, and the line after it the position and the
    instructions spent in those calls. Names are compressed to `(id)` after
    their first use; a glibc symbol version (`free@GLIBC_2.2.5`) is cut."""
    names = {}

    def name(field):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?", field.strip())
        if not m:
            return field.strip()
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), "")

    caller = callee = ""
    pending = None
    for line in lines:
        if pending is not None:
            fields = line.split()
            yield caller, callee, pending, int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
            pending = None
        elif line.startswith("fn="):
            caller = name(line[3:])
        elif line.startswith("cfn="):
            callee = name(line[4:]).split("@", 1)[0]
        elif line.startswith("calls="):
            pending = int(line[6:].split()[0])


def callgrind_allocator_calls(lines):
    """(allocations, reallocations, frees) the program asked its allocator
    for, from a callgrind output's call records ([`callgrind_calls`])."""
    allocs = reallocs = frees = 0
    for caller, callee, n, _ in callgrind_calls(lines):
        if ALLOCATOR_INTERNAL.match(caller):
            continue
        if callee in ALLOCATE:
            allocs += n
        elif callee in REALLOCATE:
            reallocs += n
        elif callee in FREE:
            frees += n
    return allocs, reallocs, frees


# Ed25519 and its curve arithmetic (signature checks, did:key decoding, the
# audit's root signatures), by crate path.
ED25519 = re.compile(r"^<?&?(ed25519_dalek|curve25519_dalek)::")


def callgrind_inclusive(lines, pattern):
    """Instructions spent in calls into functions matching `pattern` from
    functions that do not match (so calls among them count once), from a
    callgrind output's call records."""
    return sum(cost for caller, callee, _, cost in callgrind_calls(lines) if pattern.match(callee) and not pattern.match(caller))


# glibc copies and fills blocks above a few KiB with `rep movsb` / `rep
# stosb`. callgrind counts each byte such an instruction moves as one
# instruction, so a 13 KiB copy that takes well under a microsecond on the
# CPU would count as 13,000 instructions. Under callgrind glibc is told to use
# its vector loops for every size instead, whose instructions are counted
# as they run.
NO_REP_STRINGS = "glibc.cpu.x86_rep_movsb_threshold=4294967295:glibc.cpu.x86_rep_stosb_threshold=4294967295"


# Invocations live 55 s (tokens.rs): the instructions mode mints again after
# this many seconds.
REMINT_AFTER_S = 40


def stop_callgrind_target(p, name, port, timeout=300):
    """Stop a target running under callgrind and wait for it to exit (callgrind
    writes its counts then). The passthrough stops at once on SIGINT; capgate
    drains on SIGTERM (its audit writer commits and writes a last root); nginx
    without a master exits on SIGQUIT, but only once its event loop comes
    round: its signal handler sets a flag that the loop checks after
    `epoll_wait` returns. valgrind delivers a signal at its own scheduling
    points, not at once, so the flag can (most likely) be set after the
    loop's check and before nginx blocks in `epoll_wait` again, which then
    waits for the next event (seen on 2026-12-03: over 300 s once). So
    while nginx has not exited, it is woken every 5 s by a connection to its
    port, which is printed; the accept it adds is lost in the difference of
    the two runs (18,419 instructions per request with two wakes, 18,423
    with none)."""
    import socket
    os.killpg(p.pid, {"passthrough": signal.SIGINT, "nginx": signal.SIGQUIT}.get(name, signal.SIGTERM))
    started = time.monotonic()
    while True:
        try:
            p.wait(timeout=5 if name == "nginx" else timeout)
            return
        except subprocess.TimeoutExpired:
            if time.monotonic() - started >= timeout:
                raise SystemExit(f"callgrind run of {name}: still running {timeout} s after it was told to stop")
        print(f"callgrind run of {name}: not stopped after {time.monotonic() - started:.0f} s; waking it with a connection", flush=True)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            pass


def callgrind_run(b, name, n):
    """Start `name` under callgrind, send n sequential requests on one
    keep-alive connection, stop it, and return its instruction total and its
    (allocations, reallocations, frees, Ed25519 instructions)."""
    import http.client
    out = os.path.join(b.tmp, f"callgrind-{name}-{n}.out")
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    env = {**b.env, "GLIBC_TUNABLES": NO_REP_STRINGS}
    if name == "nginx":
        port = PORTS["nginx_cg"]
        p = start(vg + [shutil.which("nginx") or "/usr/sbin/nginx", "-c", nginx_conf(b.tmp, callgrind=True), "-p", b.tmp], env=env, log=b.log)
    elif name == "passthrough":
        port = PORTS["passthrough_cg"]
        p = start(vg + [b.bins["passthrough"], str(port), str(PORTS["upstream"]), "2"], env=env, log=b.log)
    elif name == "hyper-proxy":
        port = PORTS["hyper_proxy_cg"]
        p = start(vg + [b.bins["hyper-proxy"], str(port), str(PORTS["upstream"])], env=env, log=b.log)
    else:
        port = PORTS["capgate"]
        p = start(vg + [b.bins["capgate"], "serve", "--config", b.confs[name]], env=env, log=b.log)
    wait_port(port, timeout=300)
    # Mint after the port is up: invocations live 55 s and start-up under
    # valgrind is slow. capgate-fresh sends each of n invocations once
    # (replay protection on), the others one invocation n times. On a
    # machine slow enough that the invocations near their expiry, the rest
    # are minted again (with a new delegation, verified once more: about
    # 350k instructions per re-mint, spread over the run's requests).
    invocations, minted = [], 0.0

    def mint(count):
        nonlocal ucans, invocations, minted
        with open(b.tokens(count)) as f:
            ucans, invocations = f.readline().strip(), [t for t in f.read().split() if t]
        minted = time.monotonic()

    ucans = ""
    if name.startswith("capgate"):
        mint(n if name == "capgate-fresh" else 1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    used = 0
    for i in range(n):
        if invocations and time.monotonic() - minted > REMINT_AFTER_S:
            mint(n - i if name == "capgate-fresh" else 1)
            used = i
        headers = {"authorization": f"Bearer {invocations[(i - used) % len(invocations)]}", "ucans": ucans} if invocations else {}
        conn.request("GET", b.path(name), headers=headers)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"callgrind run of {name}: request {i + 1} got {r.status}: {body[:200].decode(errors='replace')}")
    conn.close()
    stop_callgrind_target(p, name, port)
    with open(out, errors="replace") as f:
        lines = f.readlines()
    return callgrind_total(out), callgrind_allocator_calls(lines) + (callgrind_inclusive(lines, ED25519),)


def instructions(b):
    a = b.a
    n1, n2 = a.cg_requests, 3 * a.cg_requests
    names = ("nginx", "passthrough", "hyper-proxy", "capgate-reused-noaudit", "capgate-reused", "capgate-fresh")
    per, counts = {}, {}
    for name in names:
        (t1, c1), (t2, c2) = callgrind_run(b, name, n1), callgrind_run(b, name, n2)
        per[name] = (t2 - t1) / (n2 - n1)
        counts[name] = [(y - x) / (n2 - n1) for x, y in zip(c1, c2)]
        print(f"callgrind {name:22s} {t1} instr for {n1} requests, {t2} for {n2}: {per[name]:.0f} per request; allocations, reallocations, frees, Ed25519 instructions per request: {', '.join(f'{x:.1f}' for x in counts[name])}", flush=True)
    base, nginx = per["passthrough"], per["nginx"]
    lines = [
        f"**Instructions per request** (valgrind --tool=callgrind, whole process, all threads): sequential GETs on one keep-alive connection, (I({n2}) − I({n1})) / {n2 - n1}. valgrind hides SHA-NI, so the SHA-256 of the token hash and of the audit chain runs in software here and weighs more than on the real CPU. glibc's `rep movsb`/`rep stosb` paths are turned off (GLIBC_TUNABLES), because callgrind counts every byte they move as an instruction.",
        "",
        "nginx runs as one process (`master_process off`, one worker) with the same proxy settings as in the throughput runs. Allocations, reallocations and frees are the program's calls into its allocator (glibc's for nginx, the passthrough and the hyper proxy, mimalloc for capgate), from the same callgrind runs, differenced the same way. capgate-fresh sends a new invocation on every request (replay protection on); the Ed25519 column is the instructions spent in ed25519-dalek and curve25519-dalek (the invocation's signature check; a reused token is verified once and then cached, and the audit's root signatures, written on a timer, differ by a few thousand instructions between the two runs, so its row can come out slightly negative, shown as 0).",
        "",
        "| target | instructions / request | × nginx | × passthrough | added over passthrough | allocations / request | reallocations / request | frees / request | of which Ed25519 / request |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        added = "–" if name == "nginx" else f"{per[name] - base:+.0f}"
        lines.append(f"| {name} | {per[name]:.0f} | {per[name] / nginx:.2f} | {per[name] / base:.2f} | {added} | {' | '.join(f'{x:.1f}' for x in counts[name][:3])} | {max(counts[name][3], 0):.0f} |")
    return lines


def perf_attach(args, pids):
    """Start `perf <args> -p <pids>` (stopped with SIGINT by the caller, or
    by stop_all) and give it time to attach before the load starts."""
    perf = subprocess.Popen(["perf"] + args + ["-p", ",".join(map(str, pids))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    procs.append(perf)
    time.sleep(0.5)
    if perf.poll() is not None:
        raise SystemExit(f"perf {args[0]} failed (tracepoints need perf_event_paranoid <= 2 and root or CAP_PERFMON): {perf.stderr.read().decode(errors='replace')[-300:]}")
    return perf


def syscalls(b):
    """System calls by name, context switches and wake-ups per request of
    each proxy under wrk, from perf's tracepoints on the server's processes
    (nginx: master and workers; the upstream and wrk are not counted)."""
    a = b.a
    names = ("nginx", "passthrough", "hyper-proxy", "capgate-reused-noaudit", "capgate-reused")
    events = "syscalls:sys_enter_*,sched:sched_switch,sched:sched_wakeup"
    per, rps = {}, {}
    for name in names:
        p, port = b.server(name)
        tokfile = b.tokens(1) if name.startswith("capgate") else "-"
        out = os.path.join(b.tmp, f"perf-{name}.txt")
        pids = pids_of(p.pid)
        perf = perf_attach(["stat", "-x,", "-e", events, "-o", out], pids)
        r = wrk(port, os.path.join(HERE, "wrk_plain.lua"), [tokfile, b.path(name)], a.duration, a.connections)
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=30)
        n = max(r["requests"], 1)
        counts = {}
        for line in open(out):
            f = line.strip().split(",")
            if len(f) >= 3 and re.fullmatch(r"\d+", f[0]):
                counts[f[2].replace("syscalls:sys_enter_", "")] = int(f[0]) / n
        per[name], rps[name] = counts, r["rps"]
        shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v >= 0.005)
        print(f"syscalls {name:22s} {r['rps']:10.0f} req/s; per request: {shown}", flush=True)
        b.done(name, p)
    sched = ("sched:sched_switch", "sched:sched_wakeup")
    calls = sorted({k for c in per.values() for k, v in c.items() if v >= 0.005 and k not in sched}, key=lambda k: -max(c.get(k, 0) for c in per.values()))
    lines = [
        f"**System calls per request** (perf stat on the server's processes over one wrk -t2 -c{a.connections} -d{a.duration}s run each, divided by wrk's requests; calls below 0.005 per request left out). `sched_switch` counts the times a server thread left the CPU, `sched_wakeup` the times one was woken.",
        "",
        "| target | req/s | " + " | ".join(calls) + " | all calls | sched_switch | sched_wakeup |",
        "|---|---|" + "---|" * (len(calls) + 3),
    ]
    for name in names:
        c = per[name]
        total = sum(v for k, v in c.items() if k not in sched)
        lines.append(f"| {name} | {rps[name]:.0f} | " + " | ".join(f"{c.get(k, 0):.2f}" for k in calls) + f" | {total:.2f} | {c.get(sched[0], 0):.2f} | {c.get(sched[1], 0):.2f} |")
    return lines


PHASE_EVENTS = ",".join("syscalls:" + e for e in (
    "sys_exit_accept4", "sys_enter_close", "sys_enter_recvfrom", "sys_exit_recvfrom", "sys_enter_sendto", "sys_enter_writev",
    "sys_exit_epoll_wait"))


def phase_split(script_lines):
    """Per request, from a server's traced system calls (perf script lines
    `tid time: syscalls:event: args`), the three stretches it holds a
    request: its own work from reading the agent's request to starting the
    write upstream, the wait from that write to reading the upstream's
    response, and its work from that read to starting the write back to the
    agent. Agent sockets are the descriptors accept4 returned during the
    trace (the load starts after perf); every other socket is upstream. A
    thread's read is paired with the next write it starts, so a request
    whose stretch was interleaved with another on the same thread is left
    out rather than misattributed. Also the dispatch delay: from a thread's
    return from epoll_wait with events to its first read that gets bytes,
    split by whether that read was an agent's request or an upstream's
    reply. Times in microseconds."""
    agent, last_fd, woke = set(), {}, {}
    agent_read, up_read, up_sent = {}, {}, {}
    out = {"request": [], "upstream": [], "response": [], "wake_agent": [], "wake_upstream": []}
    pat = re.compile(r"\s*(\d+)\s+([\d.]+):\s+syscalls:(\w+):\s*(.*)")
    for line in script_lines:
        m = pat.match(line)
        if not m:
            continue
        tid, t, ev, args = int(m.group(1)), float(m.group(2)) * 1e6, m.group(3), m.group(4)
        fd = re.search(r"fd: (0x[0-9a-f]+)", args)
        fd = int(fd.group(1), 16) if fd else None
        if ev == "sys_exit_accept4":
            ret = int(args.strip(), 16)
            if ret < 1 << 31:
                agent.add(ret)
        elif ev == "sys_enter_close":
            agent.discard(fd)
        elif ev == "sys_exit_epoll_wait":
            ret = int(args.strip(), 16)
            if 0 < ret < 1 << 63:
                woke[tid] = t
            else:
                woke.pop(tid, None)  # a timeout or an error: no wake to time
        elif ev == "sys_enter_recvfrom":
            last_fd[tid] = fd
        elif ev == "sys_exit_recvfrom":
            ret, rfd = int(args.strip(), 16), last_fd.pop(tid, None)
            if rfd is None or ret == 0 or ret >= 1 << 63:
                continue  # nothing read (EAGAIN, EOF)
            if tid in woke:
                out["wake_agent" if rfd in agent else "wake_upstream"].append(t - woke.pop(tid))
            if rfd in agent:
                agent_read[tid] = t
                up_read.pop(tid, None)
            else:
                if rfd in up_sent:
                    out["upstream"].append(t - up_sent.pop(rfd))
                up_read[tid] = t
                agent_read.pop(tid, None)
        elif ev in ("sys_enter_sendto", "sys_enter_writev"):
            if fd in agent:
                if tid in up_read:
                    out["response"].append(t - up_read.pop(tid))
            elif tid in agent_read:
                out["request"].append(t - agent_read.pop(tid))
                up_sent[fd] = t
    return out


def phases(b):
    """Where each proxy's added latency goes, at the latency mode's fixed
    rate: perf records the server's socket system calls (tracepoints, low
    overhead) while bench-rate drives it, and phase_split cuts each request
    into the proxy's own work before the upstream write, the upstream wait
    and its own work after the upstream read. Rounds interleave the
    targets; the table gives the median of the per-round medians."""
    a = b.a
    names = ("nginx", "passthrough", "hyper-proxy", "capgate-reused-noaudit", "capgate-reused", "capgate-fresh")
    rounds = {name: [] for name in names}
    for rnd in range(a.rounds):
        for name in names:
            p, port = b.server(name)
            pids = pids_of(p.pid)
            data = os.path.join(b.tmp, f"phases-{name}.data")
            perf = perf_attach(["record", "-q", "-o", data, "-e", PHASE_EVENTS], pids)
            r = b.rate(name, port, a.rate, a.duration)
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
            script = subprocess.run(["perf", "script", "-i", data, "-F", "tid,time,event,trace"], capture_output=True, text=True, check=True).stdout
            os.remove(data)
            split = phase_split(script.splitlines())
            m = {k: statistics.median(v) if v else float("nan") for k, v in split.items()}
            m["client"], m["n"] = r["p50_us"], min(len(split["request"]), len(split["response"]))
            rounds[name].append(m)
            print(f"round {rnd + 1} phases {name:22s} client p50 {m['client']} us; request {m['request']:.0f}, upstream {m['upstream']:.0f}, response {m['response']:.0f} us; epoll to read {m['wake_agent']:.0f} / {m['wake_upstream']:.0f} us (n {m['n']})", flush=True)
            b.done(name, p)
    lines = [
        f"**Where the latency goes** at {a.rate} req/s over 16 keep-alive connections, {a.duration}s, {a.rounds} rounds (benches/load/rate.rs): perf records each server's socket system calls, and each request is cut into the proxy's own work from reading the agent's request to starting the upstream write, the wait for the upstream's reply (that write, loopback delivery, the upstream's work and the proxy's wake-up), and the proxy's own work from reading the reply to starting the write back. Per round the median over the requests whose stretches did not interleave with another request's on the same thread (n: the fewest in a round); the table gives the median over rounds.",
        "",
        "| target | client p50 µs | request → upstream write µs | upstream wait µs | reply → agent write µs | own work µs | rest µs | epoll → request read µs | epoll → reply read µs | n |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        med = {k: statistics.median(r[k] for r in rounds[name]) for k in ("client", "request", "upstream", "response", "wake_agent", "wake_upstream")}
        lines.append(f"| {name} | {med['client']:.0f} | {med['request']:.0f} | {med['upstream']:.0f} | {med['response']:.0f} | {med['request'] + med['response']:.0f} | {med['client'] - med['request'] - med['upstream'] - med['response']:.0f} | {med['wake_agent']:.0f} | {med['wake_upstream']:.0f} | {min(r['n'] for r in rounds[name])} |")
    lines += ["", "Own work is the sum of the two stretches in which the proxy runs its code. The rest is the client's p50 less the three stretches (medians, so approximate): the agent's side, from the client's write to the proxy's read of the request and from the proxy's write of the reply to the client's read, including the proxy's wake-ups. The epoll columns are the dispatch delay inside the proxy: from a thread's return from epoll_wait to its first read that gets bytes, when that read is an agent's request or an upstream's reply."]
    return lines


# Every mode, in the order a run takes them; all but syscalls and phases run by default.
MODES = {"throughput": throughput, "http2": http2, "latency": latency, "memory": memory, "instructions": instructions, "syscalls": syscalls, "phases": phases}
DEFAULT_MODES = [m for m in MODES if m not in ("syscalls", "phases")]


def run_modes(b, modes, header):
    """Run each (name, function) mode in turn and return the report's sections,
    `header` first. A full run takes over ten minutes, so when a mode fails
    (or the run is interrupted) the sections of the modes before it are
    printed before the error goes on; RESULTS.md is then left as it is."""
    sections = [header]
    for mode, fn in modes:
        try:
            sections.append("\n".join(fn(b)))
        except BaseException:
            if len(sections) > 1:
                print(f"\n(the {mode} mode did not finish; what the modes before it measured follows)\n\n" + "\n\n".join(sections), flush=True)
            raise
    return sections


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--pool", type=int, default=0, help="fresh tokens per run (default: enough for 20k req/s)")
    ap.add_argument("--modes", default=",".join(DEFAULT_MODES), help="comma-separated: throughput, http2, latency, memory, instructions; syscalls and phases are not run by default")
    ap.add_argument("--cg-requests", type=int, default=1000, help="instructions mode: requests in the shorter of the two callgrind runs")
    ap.add_argument("--h2-streams", type=int, default=4, help="http2 mode: concurrent streams per connection")
    ap.add_argument("--rate", type=int, default=2000, help="latency mode: fixed request rate")
    ap.add_argument("--idle", type=int, default=1000, help="memory mode: idle keep-alive connections")
    ap.add_argument("--soak", type=int, default=0, help="also run a soak of this many seconds (600 for the 10-minute soak)")
    ap.add_argument("--soak-rate", type=int, default=1000)
    ap.add_argument("--targets", default="", help="throughput mode: only these targets, comma-separated (a partial run is printed, RESULTS.md is kept)")
    a = ap.parse_args()
    a.only = [t for t in (x.strip() for x in a.targets.split(",")) if t]
    if a.h2_streams < 1 or a.connections % a.h2_streams or a.connections // a.h2_streams < 2:
        ap.error("--h2-streams must divide --connections into at least 2 connections (h2load runs 2 threads)")
    a.mode_list = [m for m in (x.strip() for x in a.modes.split(",")) if m]
    bad_modes = [m for m in a.mode_list if m not in MODES]
    if bad_modes:
        ap.error(f"unknown mode(s) {', '.join(bad_modes)}; modes are {', '.join(MODES)}")
    if a.cg_requests < 1:
        ap.error("--cg-requests must be at least 1")
    if a.only:
        unknown = [t for t in a.only if t not in THROUGHPUT_TARGETS]
        if unknown or a.mode_list != ["throughput"]:
            ap.error(f"--targets takes targets of {', '.join(THROUGHPUT_TARGETS)} (unknown: {', '.join(unknown) or 'none'}) and needs --modes throughput")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    ensure_tools(perf=bool({"syscalls", "phases"} & set(a.mode_list)))
    bins = build()
    tmp = tempfile.mkdtemp(prefix="capgate-load-")
    try:
        b = Bench(a, bins, tmp)
        modes = [(m, fn) for m, fn in MODES.items() if m in a.mode_list] + ([("soak", soak)] if a.soak else [])
        sections = run_modes(b, modes, f"Load harness, {datetime.date.today()}, {os.cpu_count()} cores ({cpu_model()}), everything on 127.0.0.1.")
        report = "\n\n".join(sections)
        print("\n" + report)
        # Only a run of all the default modes replaces RESULTS.md; a partial
        # run is printed only.
        if not a.only and set(DEFAULT_MODES) <= set(a.mode_list):
            open(os.path.join(HERE, "RESULTS.md"), "w").write(report + "\n")
        else:
            print("\n(a partial run: benches/load/RESULTS.md is kept)")
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
