#!/usr/bin/env python3
"""capgate load harness: one command, everything on 127.0.0.1.

    python3 benches/load/harness.py [--duration 10] [--rounds 3] [--connections 64]

It builds the release binaries, installs wrk and nginx with apt when they are
missing, and runs, interleaved round by round with the same wrk settings:

  direct       the upstream itself
  nginx        nginx as a plain reverse proxy (its own generated config)
  passthrough  a bare pingora proxy built from benches/load/passthrough.rs
  capgate-reused  capgate, full pipeline, one token reused (replay protection off)
  capgate-reused-noaudit  the same with the audit trail off (audit cost)
  capgate-fresh   capgate, full pipeline, a fresh pre-minted token per request
                  (replay protection on): the worst case

capgate runs with the UCAN chain, Cedar, credential injection, the response
sanitizer and the audit trail all on, logging at warn. For each target it
reports the median over rounds of req/s, p50/p99/p99.9 latency, CPU seconds
per 1k requests (utime+stime of the server's processes from /proc) and peak
RSS, plus ratios to nginx and to direct, and writes benches/load/RESULTS.md.
Every process it starts is stopped before it exits.
"""
import argparse, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time, json, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "benches", "load")
PORTS = {"upstream": 18081, "nginx": 18090, "passthrough": 18091, "capgate": 18092, "capgate_admin": 18093}
TICK = os.sysconf("SC_CLK_TCK")
procs = []


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    missing = [p for p, b in (("wrk", "wrk"), ("nginx", "nginx")) if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(sudo + ["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL)
        sh(sudo + ["apt-get", "install", "-y", "-qq"] + missing, stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def build():
    sh(["cargo", "build", "--release", "--bin", "capgate", "--example", "bench-upstream", "--example", "bench-passthrough", "--example", "bench-tokens"], cwd=ROOT)
    rel = os.path.join(ROOT, "target", "release")
    return {"capgate": os.path.join(rel, "capgate"), "upstream": os.path.join(rel, "examples", "bench-upstream"),
            "passthrough": os.path.join(rel, "examples", "bench-passthrough"), "tokens": os.path.join(rel, "examples", "bench-tokens")}


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
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


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


def nginx_conf(tmp):
    conf = f"""
worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
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
    listen 127.0.0.1:{PORTS['nginx']};
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""
    path = os.path.join(tmp, "nginx.conf")
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--pool", type=int, default=0, help="fresh tokens per run (default: enough for 20k req/s)")
    a = ap.parse_args()
    ensure_tools()
    bins = build()
    tmp = tempfile.mkdtemp(prefix="capgate-load-")
    env = {**os.environ, "CAPGATE_VAULT_KEY": subprocess.run([bins["capgate"], "vault", "keygen"], capture_output=True, text=True, check=True).stdout.strip(), "RUST_LOG": "warn"}
    try:
        for k in ("gateway", "root", "agent", "audit"):
            sh([bins["capgate"], "keygen", "--out", os.path.join(tmp, f"{k}.pem")], stdout=subprocess.DEVNULL)
        reused_conf, fresh_conf, noaudit_conf = capgate_conf(tmp, False), capgate_conf(tmp, True), capgate_conf(tmp, False, audit=False)
        sh([bins["capgate"], "vault", "put", "--config", reused_conf, "--tenant", "bench", "--name", "up"], input=b"bench-upstream-credential\n", env=env, stdout=subprocess.DEVNULL)
        log = open(os.path.join(tmp, "servers.log"), "wb")
        targets = {}
        targets["direct"] = (start([bins["upstream"], str(PORTS["upstream"])], log=log), PORTS["upstream"])
        wait_port(PORTS["upstream"])
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        targets["nginx"] = (start([nginx_bin, "-c", nginx_conf(tmp), "-p", tmp], log=log), PORTS["nginx"])
        targets["passthrough"] = (start([bins["passthrough"], str(PORTS["passthrough"]), str(PORTS["upstream"]), "2"], log=log), PORTS["passthrough"])
        for name in ("nginx", "passthrough"):
            wait_port(targets[name][1])
        up_url = f"http://127.0.0.1:{PORTS['upstream']}"
        pool = a.pool or 20000 * a.duration
        results = {k: [] for k in ("direct", "nginx", "passthrough", "capgate-reused", "capgate-reused-noaudit", "capgate-fresh")}
        for rnd in range(a.rounds):
            for name in results:
                if name.startswith("capgate"):
                    replay = name == "capgate-fresh"
                    conf = fresh_conf if replay else (noaudit_conf if name.endswith("noaudit") else reused_conf)
                    p = start([bins["capgate"], "serve", "--config", conf], env=env, log=log)
                    wait_port(PORTS["capgate"])
                    tokfile = os.path.join(tmp, "tokens.txt")
                    n = pool if replay else 1
                    sh([bins["tokens"], os.path.join(tmp, "root.pem"), os.path.join(tmp, "agent.pem"), os.path.join(tmp, "gateway.pem"), up_url, str(n), tokfile])
                    port, pid = PORTS["capgate"], p.pid
                    script, args = (os.path.join(HERE, "wrk_tokens.lua"), [tokfile, "2", "/up/bench"]) if replay else (os.path.join(HERE, "wrk_plain.lua"), [tokfile, "/up/bench"])
                else:
                    p, port = targets[name]
                    pid = p.pid
                    script, args = os.path.join(HERE, "wrk_plain.lua"), ["-", "/bench"]
                pids = pids_of(pid)
                t0 = cpu_ticks(pids)
                r = wrk(port, script, args, a.duration, a.connections)
                r["cpu_s_per_1k"] = (cpu_ticks(pids) - t0) / TICK / max(r["requests"], 1) * 1000
                r["rss_mib"] = rss_kib(pids) / 1024
                results[name].append(r)
                print(f"round {rnd + 1} {name:15s} {r['rps']:10.0f} req/s  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  non-2xx {r['non2xx']}", flush=True)
                if name.startswith("capgate"):
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=20)
        med = {k: {m: statistics.median(x[m] for x in v) for m in ("rps", "p50", "p99", "p999", "cpu_s_per_1k", "rss_mib", "non2xx")} for k, v in results.items()}
        lines = [
            f"Load harness, {datetime.date.today()}, {os.cpu_count()} cores ({cpu_model()}), wrk -t2 -c{a.connections} -d{a.duration}s, {a.rounds} rounds interleaved, medians.",
            "",
            "| target | req/s | × nginx | × direct | p50 ms | p99 ms | p99.9 ms | CPU s / 1k req | peak RSS MiB | non-2xx |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for k, m in med.items():
            lines.append(f"| {k} | {m['rps']:.0f} | {m['rps'] / med['nginx']['rps']:.2f} | {m['rps'] / med['direct']['rps']:.2f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['p999']:.2f} | {m['cpu_s_per_1k']:.3f} | {m['rss_mib']:.1f} | {m['non2xx']:.0f} |")
        table = "\n".join(lines)
        print("\n" + table)
        open(os.path.join(HERE, "RESULTS.md"), "w").write(table + "\n")
        json.dump(results, open(os.path.join(tmp, "results.json"), "w"), indent=1)
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
