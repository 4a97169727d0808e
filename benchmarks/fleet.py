#!/usr/bin/env python3
"""The fleet's figures (issue 12), with real processes on loopback and the defaults a user gets:

1. convergence: a lighthouse and three nodes (mutual TLS from a secret), all four started at once, and the three
   nodes started at once beside a running lighthouse; time from the last process start until the lighthouse's
   admin endpoint lists four members Up.
2. kill -9 of a node: time to unreachable, to downed and to removed, as the lighthouse sees it, with Akka's defaults
   and with a tuned configuration (--heartbeat-interval 0.5 --heartbeat-pause 1.5 --stable-after 2).
3. false downing under load: the tuned configuration while wrk drives every node's forward proxy at full speed;
   the lighthouse is polled throughout and any member ever seen unreachable (or a process gone) is a false downing.
4. the cost of TLS on remote messaging (benchmarks/Rama.RemotePing).

Usage: benchmarks/fleet.py [--quick]      writes benchmarks/results/<date>-fleet[-quick].md
"""
import datetime, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = "--quick" in sys.argv
TRIALS = 2 if QUICK else 5
KILL_TRIALS = 1 if QUICK else 3
LOAD_SECONDS = 15 if QUICK else 60
TUNED = ["--heartbeat-interval", "0.5", "--heartbeat-pause", "1.5", "--stable-after", "2"]
SECRET = "fleet-benchmark-secret-0123456789"
NODE = os.path.join(ROOT, "Rama.Node/bin/Release/net10.0/rama-node.dll")
LIGHTHOUSE = os.path.join(ROOT, "Rama.Lighthouse/bin/Release/net10.0/rama-lighthouse.dll")
PING = os.path.join(ROOT, "benchmarks/Rama.RemotePing/bin/Release/net10.0/rama-remoteping.dll")
WORK = tempfile.mkdtemp(prefix="rama-fleet-bench.")
PROCS = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log):
    p = subprocess.Popen(["dotnet"] + args, stdout=open(os.path.join(WORK, log), "w"), stderr=subprocess.STDOUT)
    PROCS.append(p)
    return p


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for p in PROCS:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    PROCS.clear()


def admin(port, palette, command, args=()):
    """One admin request (the protocol pbm speaks); returns the frames, or None when the endpoint does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(3)
            s.sendall((json.dumps({"palette": palette, "command": command, "args": list(args)}) + "\n").encode())
            data = b""
            while b'"type":"end"' not in data or not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None


def members(port):
    frames = admin(port, "cluster", "show")
    if not frames:
        return None
    table = next((f for f in frames if f.get("type") == "table"), None)
    if table is None:
        return []
    cols = table["columns"]
    return [dict(zip(cols, row)) for row in table["rows"]]


def wait_until(predicate, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


class Fleet:
    def __init__(self, extra=(), name="f"):
        self.extra = list(extra)
        self.name = name
        self.lh_cluster, self.lh_admin = free_port(), free_port()
        self.nodes = [dict(cluster=free_port(), admin=free_port(), proxy=free_port()) for _ in range(3)]

    def lighthouse_args(self):
        return [LIGHTHOUSE, "--cluster", f"127.0.0.1:{self.lh_cluster}", "--admin", f"127.0.0.1:{self.lh_admin}", "--cluster-secret", SECRET] + self.extra

    def node_args(self, n):
        return [NODE, "--listen", f"127.0.0.1:{n['proxy']}", "--cluster", f"127.0.0.1:{n['cluster']}", "--admin", f"127.0.0.1:{n['admin']}",
                "--seeds", f"127.0.0.1:{self.lh_cluster}", "--cluster-secret", SECRET] + self.extra

    def start_lighthouse(self):
        self.lh = start(self.lighthouse_args(), f"{self.name}-lighthouse.log")

    def start_nodes(self):
        for i, n in enumerate(self.nodes):
            n["proc"] = start(self.node_args(n), f"{self.name}-node{i + 1}.log")

    def up_count(self):
        m = members(self.lh_admin)
        return sum(1 for x in m if x["status"] == "Up" and x["reachability"] == "reachable") if m else 0


def convergence(all_at_once, last_only=False):
    f = Fleet(name="converge")
    if last_only:
        f.start_lighthouse()
        for i, n in enumerate(f.nodes[:2]):
            n["proc"] = start(f.node_args(n), f"converge-node{i + 1}.log")
        if not wait_until(lambda: f.up_count() == 3, 60):
            raise SystemExit("a lighthouse and two nodes did not converge; logs in " + WORK)
        n = f.nodes[2]
        n["proc"] = start(f.node_args(n), "converge-node3.log")
    elif not all_at_once:
        f.start_lighthouse()
        if not wait_until(lambda: f.up_count() == 1, 30):
            raise SystemExit("lighthouse did not come up: " + open(os.path.join(WORK, "converge-lighthouse.log")).read()[-2000:])
        f.start_nodes()
    else:
        f.start_nodes()
        f.start_lighthouse()
    t0 = time.monotonic()
    ok = wait_until(lambda: f.up_count() == 4, 60)
    elapsed = time.monotonic() - t0
    stop_all()
    if not ok:
        raise SystemExit("no convergence within 60 s; logs in " + WORK)
    return elapsed


def kill_to_removed(extra, label):
    f = Fleet(extra, name="kill")
    f.start_lighthouse()
    f.start_nodes()
    if not wait_until(lambda: f.up_count() == 4, 60):
        raise SystemExit("no convergence for the kill run; logs in " + WORK)
    victim = f.nodes[2]
    address = f"127.0.0.1:{victim['cluster']}"
    t0 = time.monotonic()
    victim["proc"].kill()
    marks = {}
    deadline = t0 + 120
    while time.monotonic() < deadline:
        m = members(f.lh_admin) or []
        row = next((x for x in m if x["address"].endswith("@" + address)), None)
        now = time.monotonic() - t0
        if row is None:
            marks.setdefault("removed", now)
            break
        if row["reachability"] != "reachable":
            marks.setdefault("unreachable", now)
        if row["status"] == "Down":
            marks.setdefault("down", now)
        time.sleep(0.05)
    # The survivors as the lighthouse lists them once the victim is gone: three Up and reachable (waited for, 10 s at most).
    survivors_up = wait_until(lambda: f.up_count() == 3 and 3, 10, step=0.1) or f.up_count()
    stop_all()
    if "removed" not in marks:
        raise SystemExit(f"{label}: the killed node was not removed within 120 s; logs in {WORK}")
    return marks, survivors_up


def origin():
    """nginx serving /1k on a free port (the benchmarks' origin)."""
    port = free_port()
    os.makedirs(os.path.join(WORK, "www"), exist_ok=True)
    with open(os.path.join(WORK, "www", "1k"), "wb") as fh:
        fh.write(b"x" * 1024)
    conf = os.path.join(WORK, "origin.conf")
    with open(conf, "w") as fh:
        fh.write(f"""daemon off; worker_processes 1; pid {WORK}/nginx.pid; error_log {WORK}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {WORK}; proxy_temp_path {WORK}; fastcgi_temp_path {WORK}; uwsgi_temp_path {WORK}; scgi_temp_path {WORK};
  server {{ listen 127.0.0.1:{port}; keepalive_requests 100000; location / {{ root {WORK}/www; }} }} }}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    p = subprocess.Popen([nginx, "-e", f"{WORK}/nginx-error.log", "-p", WORK, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_until(lambda: _connects(port), 10):
        raise SystemExit("nginx origin did not start")
    return p, port


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def false_downing(extra):
    nginx, port = origin()
    f = Fleet(extra, name="load")
    f.start_lighthouse()
    f.start_nodes()
    try:
        if not wait_until(lambda: f.up_count() == 4, 60):
            raise SystemExit("no convergence for the load run; logs in " + WORK)
        lua = os.path.join(WORK, "abs.lua")
        with open(lua, "w") as fh:
            fh.write(f'wrk.path = "http://127.0.0.1:{port}/1k"\nwrk.headers["Host"] = "127.0.0.1:{port}"\n')
        wrks = [subprocess.Popen(["wrk", "-t", "1", "-c", "50", "-d", f"{LOAD_SECONDS}s", "-s", lua, f"http://127.0.0.1:{n['proxy']}/"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for n in f.nodes]
        polls, unreachable_seen, min_up = 0, 0, 4
        while any(w.poll() is None for w in wrks):
            m = members(f.lh_admin)
            polls += 1
            if m is not None:
                unreachable_seen += sum(1 for x in m if x["reachability"] != "reachable" or x["status"] != "Up")
                min_up = min(min_up, sum(1 for x in m if x["status"] == "Up"))
            time.sleep(0.2)
        rps = 0.0
        for w in wrks:
            out = w.stdout.read()
            for line in out.splitlines():
                if line.startswith("Requests/sec:"):
                    rps += float(line.split()[1])
        alive = sum(1 for n in f.nodes if n["proc"].poll() is None)
        return dict(polls=polls, unreachable=unreachable_seen, min_up=min_up, rps=rps, alive=alive, up_after=f.up_count())
    finally:
        stop_all()
        nginx.terminate()
        nginx.wait()


def main():
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            subprocess.run(["apt-get", "install", "-y", "-qq", tool], check=False)
    print("==> build (Release)", flush=True)
    for project in ("Rama.Node", "Rama.Lighthouse", "benchmarks/Rama.RemotePing"):
        subprocess.run(["dotnet", "build", os.path.join(ROOT, project), "-c", "Release", "-nologo", "-clp:ErrorsOnly", "-v", "q"], check=True, stdout=subprocess.DEVNULL)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"# Fleet figures, {datetime.date.today()} ({'quick' if QUICK else 'full'} run at {commit})", "",
             f"Machine: {os.cpu_count()} cores. Real processes on 127.0.0.1, Release builds, the node's defaults (logging included), "
             "mutual TLS with the fleet CA derived from `--cluster-secret`. Reproduce: `benchmarks/fleet.py" + (" --quick" if QUICK else "") + "`.", ""]

    print("==> 1. convergence", flush=True)
    together = [convergence(True) for _ in range(TRIALS)]
    beside = [convergence(False) for _ in range(TRIALS)]
    last = [convergence(False, last_only=True) for _ in range(TRIALS)]
    lines += ["## 1. Convergence (aim: under 3 s from the last process start)", "",
              "| start | trials | median | min | max |", "| --- | ---: | ---: | ---: | ---: |"]
    for label, xs in (("lighthouse and three nodes at once", together), ("three nodes beside a running lighthouse", beside),
                      ("a third node joining a running lighthouse and two nodes", last)):
        lines.append(f"| {label} | {len(xs)} | {statistics.median(xs):.2f} s | {min(xs):.2f} s | {max(xs):.2f} s |")
    lines.append("")

    print("==> 2. kill -9 to removed", flush=True)
    lines += ["## 2. `kill -9` of a node: until the lighthouse sees it unreachable, downed, removed (aim: removed under 8 s)", "",
              "| configuration | trial | unreachable | downed | removed | survivors Up after |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    configs = [("Akka's defaults (heartbeat pause 3 s, stable-after 20 s)", []),
               ("tuned: --heartbeat-interval 0.5 --heartbeat-pause 1.5 --stable-after 2", TUNED)]
    for label, extra in configs:
        for trial in range(KILL_TRIALS):
            marks, up = kill_to_removed(extra, label)
            fmt = lambda k: f"{marks[k]:.1f} s" if k in marks else "-"
            lines.append(f"| {label} | {trial + 1} | {fmt('unreachable')} | {fmt('down')} | {fmt('removed')} | {up} |")
            print("   ", lines[-1], flush=True)
    lines.append("")

    print("==> 3. false downing under load", flush=True)
    load = false_downing(TUNED)
    lines += [f"## 3. False downing under full proxy load (tuned configuration, {LOAD_SECONDS} s)", "",
              "wrk (1 thread, 50 connections each) drives GET /1k through the forward proxy of all three nodes at once to an nginx origin, "
              "on the same 2 cores as the fleet. The lighthouse's view is polled every 200 ms.", "",
              "| proxy load (sum) | polls | member-polls not Up+reachable | fewest Up | nodes alive after | Up after |", "| ---: | ---: | ---: | ---: | ---: | ---: |",
              f"| {load['rps']:,.0f} req/s | {load['polls']} | {load['unreachable']} | {load['min_up']} | {load['alive']} of 3 | {load['up_after']} |", ""]

    print("==> 4. TLS on remote messaging", flush=True)
    ping = subprocess.run(["dotnet", PING, "3" if QUICK else "10"], capture_output=True, text=True, timeout=600)
    lines += ["## 4. The cost of TLS on remote messaging (benchmarks/Rama.RemotePing)", "",
              "Two actor systems over loopback (Akka.Remote, DotNetty), an echo actor, 100-byte payloads (Akka's default serializer).", ""]
    lines += [l for l in ping.stdout.splitlines() if l.startswith("|")] + [""]

    name = f"{datetime.date.today()}-fleet{'-quick' if QUICK else ''}.md"
    path = os.path.join(ROOT, "benchmarks", "results", name)
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))
    print("wrote", path)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
        if not os.environ.get("RAMA_BENCH_KEEP"):
            shutil.rmtree(WORK, ignore_errors=True)
