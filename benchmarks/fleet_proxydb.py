#!/usr/bin/env python3
"""The fleet's proxy database (issue 13), with real processes on loopback and the defaults a user gets:

1. replica update throughput: `proxydb load` of a 100,000-record CSV on node1 of a 3-node fleet (plus a lighthouse),
   timed from the request until every node's replica (`proxydb stats` field `records`) holds all 100,000;
2. memory per 100,000 records: each node's RSS before the load and after it;
3. selection latency through the proxy, what a user gets: sequential CONNECTs with a sticky session in the username
   (a broad filter, ~25k matches, and a narrow one, ~250) through a node alone with the same file (`--proxydb`) and
   through node2 of the fleet (its DistributedData replica), upstream microsocks, origin a tiny Python server.

Usage: benchmarks/fleet_proxydb.py [--quick] [--poll S]   writes benchmarks/results/<date>-fleet-proxydb[-quick].md
"""
import base64, collections, datetime, json, os, random, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = "--quick" in sys.argv
# --poll S: how often each node's `proxydb stats` is asked during the load (default 0.05 s, as issue 13's must-hold asks).
POLL = float(sys.argv[sys.argv.index("--poll") + 1]) if "--poll" in sys.argv else 0.05
RECORDS = 100_000
N = 1000 if QUICK else 2000
WARMUP = 200
BLOCK = 250             # latency samples are taken in interleaved blocks: single node, fleet node, single node, ...
SECRET = "fleet-benchmark-secret-0123456789"
NODE = os.path.join(ROOT, "Rama.Node/bin/Release/net10.0/rama-node.dll")
LIGHTHOUSE = os.path.join(ROOT, "Rama.Lighthouse/bin/Release/net10.0/rama-lighthouse.dll")
WORK = tempfile.mkdtemp(prefix="rama-fleet-proxydb-bench.")
PROCS = []
COLUMNS = "id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,pool_id,continent,country,state,city,carrier,asn,credential"
OTHER_COUNTRIES = ("de fr gb it es nl be se no dk fi pl cz at ch pt ie gr hu ro bg hr si sk lt lv ee "
                   "ca mx br ar cl co pe jp kr cn in au").split()
assert len(OTHER_COUNTRIES) == 39 and "us" not in OTHER_COUNTRIES


# ---------------------------------------------------------------- helpers (as in benchmarks/fleet.py)

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log, program="dotnet"):
    p = subprocess.Popen(([program] if program else []) + args, stdout=open(os.path.join(WORK, log), "w"), stderr=subprocess.STDOUT)
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


def admin(port, palette, command, args=(), timeout=3):
    """One admin request (the protocol pbm speaks); returns the frames, or None when the endpoint does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(timeout)
            s.sendall((json.dumps({"palette": palette, "command": command, "args": list(args)}) + "\n").encode())
            data = b""
            while b'"type":"end"' not in data or not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        return [{"type": "error", "message": f"(client) {type(e).__name__}: {e}"}] if timeout > 3 else None


def fields(frames):
    out = {}
    for f in frames or []:
        if f.get("type") == "fields":
            out.update(f.get("fields") or {})
    return out


def table(frames, name):
    t = next((f for f in frames or [] if f.get("type") == "table" and f.get("name") == name), None)
    return (t["columns"], t["rows"]) if t else None


def errors(frames):
    return "; ".join(f.get("message", "") for f in frames or [] if f.get("type") == "error")


def members(port):
    frames = admin(port, "cluster", "show")
    if not frames:
        return None
    t = next((f for f in frames if f.get("type") == "table"), None)
    if t is None:
        return []
    return [dict(zip(t["columns"], row)) for row in t["rows"]]


def wait_until(predicate, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def rss_mib(pid):
    """VmRSS in MiB; nan when the process has exited."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def load_avg():
    return "%.2f %.2f %.2f" % os.getloadavg()


def log_has(name, text):
    try:
        with open(os.path.join(WORK, name), errors="replace") as fh:
            return text in fh.read()
    except OSError:
        return False


# ---------------------------------------------------------------- data, upstream, origin

def generate(path, port):
    rnd = random.Random(7)
    cities = collections.Counter()
    with open(path, "w") as fh:
        fh.write(COLUMNS + "\n")
        for i in range(RECORDS):
            country = "us" if rnd.randrange(4) == 0 else rnd.choice(OTHER_COUNTRIES)
            dc, res, mob = rnd.randrange(3) == 0, rnd.randrange(2) == 0, rnd.randrange(4) == 0
            if not (dc or res or mob):
                res = True
            city = f"c{rnd.randrange(400)}"
            cities[city] += 1
            b = lambda x: "1" if x else "0"
            fh.write(f"p{i:06d},1,0,0,0,1,0,{b(dc)},{b(res)},{b(mob)},127.0.0.1:{port},pool{rnd.randrange(20)},na,{country},,{city},"
                     f"carrier{rnd.randrange(10)},{rnd.randrange(1, 1001)},\n")
    return cities


def split(path, parts):
    with open(path) as fh:
        header, *rows = fh.read().splitlines()
    size = len(rows) // parts
    out = []
    for k in range(parts):
        p = os.path.join(WORK, f"part{k}.csv")
        with open(p, "w") as fh:
            fh.write("\n".join([header] + rows[k * size:(k + 1) * size]) + "\n")
        out.append(p)
    return out


def origin():
    """A tiny threaded TCP origin: every connection gets one fixed response and is closed."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    def serve(c):
        try:
            c.sendall(reply)
            c.shutdown(socket.SHUT_WR)
            c.settimeout(5)
            while c.recv(4096):
                pass
        except OSError:
            pass
        finally:
            c.close()

    def accept():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv, srv.getsockname()[1]


# ---------------------------------------------------------------- the client

def connect_once(proxy_port, origin_port, user):
    auth = base64.b64encode(f"{user}:x".encode()).decode()
    req = (f"CONNECT 127.0.0.1:{origin_port} HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n"
           f"Proxy-Authorization: Basic {auth}\r\n\r\n").encode()
    try:
        s = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    except OSError as e:
        return None, f"connect failed: {e}"
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        s.sendall(req)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        elapsed = time.perf_counter() - t0
        status = data.split(b"\r\n", 1)[0].decode(errors="replace")
        return elapsed, status
    except OSError as e:
        return None, f"{type(e).__name__}: {e}"
    finally:
        s.close()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def summary(xs):
    ms = [x * 1000 for x in xs]
    if not ms:
        return dict(n=0, p50=float("nan"), p90=float("nan"), p99=float("nan"), mean=float("nan"))
    return dict(n=len(ms), p50=pct(ms, 0.5), p90=pct(ms, 0.9), p99=pct(ms, 0.99), mean=statistics.fmean(ms))


# ---------------------------------------------------------------- main

def main():
    lines = []
    t_start = time.monotonic()
    load_start = load_avg()
    print("==> build (Release)", flush=True)
    for project in ("Rama.Node", "Rama.Lighthouse"):
        subprocess.run(["dotnet", "build", os.path.join(ROOT, project), "-c", "Release", "-nologo", "-clp:ErrorsOnly", "-v", "q"], check=True, stdout=subprocess.DEVNULL)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()

    print("==> data, microsocks, origin", flush=True)
    socks_port = free_port()
    start(["-i", "127.0.0.1", "-p", str(socks_port)], "microsocks.log", program="microsocks")
    srv, origin_port = origin()
    csv_path = os.path.join(WORK, "proxydb-100k.csv")
    cities = generate(csv_path, socks_port)
    with open(csv_path) as fh:
        rows = [r.split(",") for r in fh.read().splitlines()[1:]]
    us_count = sum(1 for r in rows if r[13] == "us")
    narrow_city, narrow_count = min(cities.items(), key=lambda kv: (abs(kv[1] - 250), kv[0]))
    csv_mib = os.path.getsize(csv_path) / 2**20
    if not wait_until(lambda: _connects(socks_port), 10):
        raise SystemExit("microsocks did not start")

    print("==> fleet: a lighthouse and three nodes", flush=True)
    lh_cluster, lh_admin = free_port(), free_port()
    nodes = [dict(name=f"node{i + 1}", cluster=free_port(), admin=free_port(), proxy=free_port()) for i in range(3)]
    lh = start([LIGHTHOUSE, "--cluster", f"127.0.0.1:{lh_cluster}", "--cluster-secret", SECRET, "--admin", f"127.0.0.1:{lh_admin}"], "lighthouse.log")
    for n in nodes:
        n["proc"] = start([NODE, "--cluster", f"127.0.0.1:{n['cluster']}", "--seeds", f"127.0.0.1:{lh_cluster}", "--cluster-secret", SECRET,
                           "--listen", f"127.0.0.1:{n['proxy']}", "--admin", f"127.0.0.1:{n['admin']}"], f"{n['name']}.log")

    def up_count():
        m = members(lh_admin)
        return sum(1 for x in m if x["status"] == "Up" and x["reachability"] == "reachable") if m else 0

    t0 = time.monotonic()
    if not wait_until(lambda: up_count() == 4 and all(log_has(f"{n['name']}.log", "Rama node ready") for n in nodes), 120, step=0.1):
        raise SystemExit("no convergence within 120 s; logs in " + WORK)
    converged = time.monotonic() - t0
    print(f"    converged in {converged:.1f} s", flush=True)
    rss_conv = [rss_mib(n["proc"].pid) for n in nodes]
    time.sleep(10)
    rss_base = [rss_mib(n["proc"].pid) for n in nodes]
    print(f"    RSS after convergence {rss_conv}, +10 s {rss_base}", flush=True)

    print("==> replica update throughput: proxydb load of 100,000 records on node1", flush=True)
    load_during = load_avg()

    def load_and_wait(paths, label):
        """Sends `proxydb load` for each path on node1 (one after the other) while every node is polled every POLL s;
        returns (answers, seconds per node until records == RECORDS or None)."""
        arrived = [None] * 3
        stop = threading.Event()
        polls = [0, 0, 0]
        last_seen = [None] * 3
        peak = [(0, None)] * 3          # (highest records seen, seconds from the request when first seen)

        def poll(k):
            while not stop.is_set() and arrived[k] is None:
                f = fields(admin(nodes[k]["admin"], "proxydb", "stats", timeout=10))
                polls[k] += 1
                if f:
                    last_seen[k] = f
                    r = int(f.get("records", "0") or 0)
                    if r > peak[k][0]:
                        peak[k] = (r, time.monotonic() - t_req)
                    if r == RECORDS:
                        arrived[k] = time.monotonic() - t_req
                        return
                time.sleep(POLL)

        answers = []
        t_req = time.monotonic()
        pollers = [threading.Thread(target=poll, args=(k,), daemon=True) for k in range(3)]
        for p in pollers:
            p.start()
        for path in paths:
            t = time.monotonic()
            frames = admin(nodes[0]["admin"], "proxydb", "load", [path], timeout=600)
            answers.append(dict(path=os.path.basename(path), seconds=time.monotonic() - t, fields=fields(frames), error=errors(frames),
                                end=next((f.get("exit") for f in frames or [] if f.get("type") == "end"), None)))
            print(f"    {label} load {os.path.basename(path)}: {answers[-1]}"[:400], flush=True)
            if answers[-1]["error"] and len(paths) == 1:
                break
        ok = not any(a["error"] for a in answers)
        for p in pollers:
            p.join(180 if ok else 30)
        stop.set()
        return answers, arrived, polls, last_seen, peak

    answers, arrived, polls, last_seen, peak = load_and_wait([csv_path], "whole")
    mode = "one `proxydb load` of the 100,000-record file"
    fallback = None
    if answers[0]["error"] or any(a is None for a in arrived):
        fallback = dict(answers=answers, arrived=arrived, last_seen=last_seen, peak=peak)
        print("    the 100k load failed or did not arrive: trying 10 loads of 10,000", flush=True)
        answers, arrived, polls, last_seen, peak = load_and_wait(split(csv_path, 10), "split")
        mode = "**fallback: ten `proxydb load`s of 10,000 records each, one after the other** (the single 100,000-record load failed, see below)"
    rss_loaded = [rss_mib(n["proc"].pid) for n in nodes]
    time.sleep(15)
    rss_later = [rss_mib(n["proc"].pid) for n in nodes]
    stats_after_load = [fields(admin(n["admin"], "proxydb", "stats", timeout=10)) for n in nodes]
    held = [int((f or {}).get("records", "0") or 0) for f in stats_after_load]
    print(f"    arrived {arrived}; RSS {rss_loaded} -> {rss_later}", flush=True)
    exits = [n["proc"].poll() for n in nodes]
    up_after_load = up_count()

    print("==> selection latency: a node alone vs node2 of the fleet", flush=True)
    alone = dict(name="alone", admin=free_port(), proxy=free_port())
    alone["proc"] = start([NODE, "--listen", f"127.0.0.1:{alone['proxy']}", "--admin", f"127.0.0.1:{alone['admin']}", "--proxydb", csv_path], "alone.log")
    if not wait_until(lambda: log_has("alone.log", "Rama node ready"), 120, step=0.1):
        raise SystemExit("the node alone did not start; logs in " + WORK)
    load_latency_start = load_avg()
    fleet_node = next((k for k in (1, 2, 0) if nodes[k]["proc"].poll() is None), None)
    targets = [("node alone (--proxydb)", alone["proxy"])]
    if fleet_node is not None:
        targets.append((f"fleet {nodes[fleet_node]['name']} (replica)", nodes[fleet_node]["proxy"]))
    series = [("broad: `country-us` (%d matches)" % us_count, "bench-country-us-session-{i}"),
              (f"narrow: `city-{narrow_city}` ({narrow_count} matches)", f"bench-city-{narrow_city}-session-{{i}}")]
    results = {}
    fleet_matches = [fields(admin(nodes[fleet_node]["admin"], "proxydb", "list", labels.split("-"), timeout=30)).get("matching", "?")
                     if fleet_node is not None else "-" for labels in ("country-us", f"city-{narrow_city}")]
    failures = collections.Counter()
    for s_label, pattern in series:
        for _, port in targets:
            for i in range(WARMUP):
                _, status = connect_once(port, origin_port, pattern.format(i=f"w{port}x{i}"))
                if " 200" not in status:
                    failures[(s_label, port, status)] += 1
        samples = {port: [] for _, port in targets}
        i = 0
        while i < N:
            for _, port in targets:
                for j in range(i, min(N, i + BLOCK)):
                    elapsed, status = connect_once(port, origin_port, pattern.format(i=j))
                    if " 200" in status:
                        samples[port].append(elapsed)
                    else:
                        failures[(s_label, port, status)] += 1
            i += BLOCK
        results[s_label] = {port: summary(samples[port]) for _, port in targets}
        print(f"    {s_label}: {results[s_label]}", flush=True)
    load_latency_end = load_avg()
    stats_node = next((n for n in nodes if n["proc"].poll() is None), None)
    stats_frames = admin(stats_node["admin"], "proxydb", "stats", timeout=10) if stats_node else None
    replicas = table(stats_frames, "replicas")
    shards = table(stats_frames, "shards")
    load_end = load_avg()

    # ------------------------------------------------------------ the report
    name = f"{datetime.date.today()}-fleet-proxydb{'-quick' if QUICK else ''}.md"
    lines += [f"# Fleet proxy database: replica updates, memory, selection latency ({datetime.date.today()}, {'quick' if QUICK else 'full'} run at {commit})", "",
              "Reproduce: `benchmarks/fleet_proxydb.py" + (" --quick" if QUICK else "") + (f" --poll {POLL:g}" if POLL != 0.05 else "") + "` (issue 13). "
              f"Machine: {os.cpu_count()} cores, shared with another engineer's work (tests, builds); load average (1/5/15 min) "
              f"at start {load_start}, at the load {load_during}, at the latency run's start {load_latency_start} and end {load_latency_end}, at the end {load_end}. "
              "Real processes on 127.0.0.1, Release builds, the node's defaults as a user runs them (server GC, logging at Information, "
              "the access log on, to stdout, redirected to a file), a lighthouse and three nodes with `--cluster-secret` (mutual TLS), "
              "the fleet's proxy database as every fleet node keeps it (256 partitions in sharded entities, one LWWRegister each, every node a DistributedData replica).", "",
              f"Data: {RECORDS:,} generated records (`random.Random(7)`, {csv_mib:.1f} MiB of CSV): {us_count:,} in country `us`, the rest over 39 other "
              "countries, 20 pools, 400 cities, 10 carriers, 1,000 ASNs, mixed datacenter/residential/mobile flags, every record `tcp` + `socks5` "
              f"at the same microsocks upstream (`127.0.0.1:{socks_port}`), ids `p000000`..`p099999`. Fleet converged (4 members Up) "
              f"{converged:.1f} s after the processes started.", ""]

    lines += ["## 1. Replica update throughput", "",
              f"What was sent: {mode}, to node1's admin endpoint (the node reads the file, validates it whole, applies it through the "
              f"256 entities). Every node's `proxydb stats` was polled every {POLL * 1000:.0f} ms (its own admin endpoint, in parallel; each `stats` asks "
              "every proxy node's replica and the shard region's cluster-wide stats, so the polling is load on the fleet too); a node's time is "
              "from sending the first `load` until its `records` field reads 100000.", ""]
    lines += ["| `load` request | answered after | answer |", "| --- | ---: | --- |"]
    for a in answers:
        ans = a["error"] and f"error: {a['error']}" or ", ".join(f"{k}={v}" for k, v in a["fields"].items())
        lines.append(f"| {a['path']} | {a['seconds']:.2f} s | {ans} |")
    lines += ["", "| node | all 100,000 in its replica after | records/s | replica updates (stats) | polls |", "| --- | ---: | ---: | ---: | ---: |"]
    for k, n in enumerate(nodes):
        t = arrived[k]
        upd = (stats_after_load[k] or {}).get("replicaUpdates", "?")
        lines.append(f"| {n['name']}{' (received the load)' if k == 0 else ''} | {t:.2f} s | {RECORDS / t:,.0f} | {upd} | {polls[k]} |" if t is not None
                     else f"| {n['name']} | never (held at most {peak[k][0]:,} records, first seen {peak[k][1] or 0:.2f} s after the first `load`; "
                          f"{(peak[k][0] / peak[k][1]) if peak[k][1] else 0:,.0f} records/s to that point) | - | {upd} | {polls[k]} |")
    if all(t is not None for t in arrived):
        slowest = max(arrived)
        lines += [f"| **slowest node** | **{slowest:.2f} s** | **{RECORDS / slowest:,.0f}** | | |"]
    if fallback:
        lines += ["", "The single 100,000-record load first tried:", ""]
        for a in fallback["answers"]:
            lines.append(f"- `proxydb load` answered after {a['seconds']:.2f} s: " + (f"error frame: `{a['error']}`" if a["error"] else "ok, " + json.dumps(a["fields"])))
        lines.append(f"- replicas at 100,000 after it: {['%.2f s' % t if t is not None else 'no' for t in fallback['arrived']]}; "
                     f"records the replicas held after it: {[(f or {}).get('records') for f in fallback['last_seen']]}")
    lines.append("")
    lines += diagnostics()

    lines += ["## 2. Memory per 100,000 records (RSS, `/proc/<pid>/status` VmRSS)", "",
              "Baseline: 10 s after convergence. The managed heap is not compacted on demand (no forced GC): RSS as is, server GC's "
              "heaps included, so the delta is an upper bound on what the records keep.", "",
              ]
    if any(e is not None for e in exits):
        lines += [f"**Fleet nodes exited before the memory figures were taken**: exit codes {exits} (None: running); the lighthouse listed "
                  f"{up_after_load} members Up and reachable afterwards. nan below means the process was gone.", ""]
    if any(h != RECORDS for h in held):
        lines += [f"**The replicas held {', '.join(f'{h:,}' for h in held)} records, not {RECORDS:,}**: the deltas below are for what they held; "
                  "scaled linearly to 100,000 in brackets (an extrapolation, not a measurement).", ""]
    lines += ["| node | converged | baseline (+10 s) | records arrived | +15 s | delta vs baseline (+15 s) = per 100,000 records |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for k, n in enumerate(nodes):
        scaled = f" ({(rss_later[k] - rss_base[k]) * RECORDS / held[k]:+.0f} MiB per 100,000 scaled)" if held[k] and held[k] != RECORDS else ""
        lines.append(f"| {n['name']} ({held[k]:,} records) | {rss_conv[k]:.0f} MiB | {rss_base[k]:.0f} MiB | {rss_loaded[k]:.0f} MiB | {rss_later[k]:.0f} MiB | "
                     f"**{rss_later[k] - rss_base[k]:+.0f} MiB**{scaled} |")
    lines += ["", f"The node alone with the same file (`--proxydb`, after the latency run): {rss_mib(alone['proc'].pid):.0f} MiB RSS.", ""]

    lines += ["## 3. Selection latency through the proxy", "",
              f"Client: Python raw sockets, sequential, one new connection per request: `CONNECT 127.0.0.1:{origin_port}` with "
              "`Proxy-Authorization: Basic` of `bench-<labels>-session-<i>:x` (a new sticky session every request, so every request runs a "
              "selection over the filter's matches), timed from sending the CONNECT to reading the `200` status line, then closed. "
              f"{WARMUP} warm-up requests per proxy and series first, then {N:,} measured per proxy, taken in interleaved blocks of {BLOCK} "
              "(node alone, fleet node, node alone, ...) so both see the same machine load. Behind the proxy: microsocks (SOCKS5, a thread per "
              "client) and a Python origin answering `200 ok` and closing.", "",
              (f"**No fleet node was running for this part** (exit codes {[n['proc'].poll() for n in nodes]}): the node alone only.\n\n"
               if fleet_node is None else "") +
              f"Matches on the fleet node's replica ({held[fleet_node if fleet_node is not None else 1]:,} records): `country-us` {fleet_matches[0]}, `city-{narrow_city}` {fleet_matches[1]} "
              f"(the node alone: {us_count:,} and {narrow_count}).", "",
              "| series | proxy | n | p50 | p90 | p99 | mean |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for s_label, _ in series:
        r = results[s_label]
        for (label, port) in targets:
            x = r[port]
            lines.append(f"| {s_label} | {label} | {x['n']} | {x['p50']:.3f} ms | {x['p90']:.3f} ms | {x['p99']:.3f} ms | {x['mean']:.3f} ms |")
        if len(targets) < 2:
            continue
        a, b = r[targets[0][1]], r[targets[1][1]]
        lines.append(f"| {s_label} | **fleet - alone** | | {b['p50'] - a['p50']:+.3f} ms | {b['p90'] - a['p90']:+.3f} ms | "
                     f"{b['p99'] - a['p99']:+.3f} ms | {b['mean'] - a['mean']:+.3f} ms |")
    lines.append("")
    if failures:
        lines += ["Requests not answered with 200 (excluded from the figures):", ""]
        lines += [f"- {s} via port {p}: `{st}` x {c}" for (s, p, st), c in failures.items()] + [""]
    else:
        lines += ["Every request (warm-up included) was answered `200`.", ""]
    if replicas:
        lines += [f"`proxydb stats` on {stats_node['name']} after the run (every proxy node's replica; `selections` counted by each node's router):", "",
                  "| " + " | ".join(replicas[0]) + " |", "|" + " --- |" * len(replicas[0])]
        lines += ["| " + " | ".join(r) + " |" for r in replicas[1]]
        lines.append("")
    if shards:
        lines += ["Shards per node: " + "; ".join(f"{r[0].split('@')[-1]}: {r[1]}" for r in shards[1]), ""]

    ba, na_ = (results[s][targets[0][1]] for s, _ in series)
    bf, nf = (results[s][targets[-1][1]] for s, _ in series)
    deltas = [rss_later[k] - rss_base[k] for k in range(3)]
    lines += ["## Reading", ""]
    if all(t is not None for t in arrived):
        lines.append(f"- Replica updates: the slowest of the three replicas held all {RECORDS:,} records {max(arrived):.2f} s after the "
                     f"`load` request ({RECORDS / max(arrived):,.0f} records/s); `load` itself answered after {sum(a['seconds'] for a in answers):.2f} s. "
                     "Each replica re-indexes its whole snapshot when partitions change (DistributedData notifies subscribers on an interval), so the figure is the fleet's end-to-end bulk update, not a per-record cost.")
    if any(t is None for t in arrived):
        lines.append(f"- Replica updates: **the fleet never held all {RECORDS:,} records**; the replicas ended at {', '.join(f'{h:,}' for h in held)}. "
                     "See the `load` answers and the node-log counts above for what failed.")
    if any(d != d for d in deltas):
        lines.append("- Memory: no figure per 100,000 records: the fleet nodes had exited before the records arrived (see above).")
    else:
        lines.append(f"- Memory: {min(deltas):+.0f} to {max(deltas):+.0f} MiB RSS per node for {', '.join(f'{h:,}' for h in sorted(set(held)))} records (the replica's 256 "
                     "LWWRegister partitions, the indexed snapshot, and on some nodes the entities owning shards), RSS as is after 15 s.")
    if len(targets) < 2:
        lines.append("- Selection latency: no fleet node survived to be measured; the node alone's figures are above.")
    else:
        lines.append(f"- Selection latency: broad p50 {ba['p50']:.3f} ms alone vs {bf['p50']:.3f} ms on the fleet node "
                 f"({bf['p50'] - ba['p50']:+.3f} ms), narrow {na_['p50']:.3f} vs {nf['p50']:.3f} ms ({nf['p50'] - na_['p50']:+.3f} ms). "
                 "The selection itself is ~48 us (broad, ~25k matches) and ~1 us (narrow) per benchmarks/results/upstream-selection.md; "
                 "the end-to-end figure is dominated by the rest of the path: accepting the client, the SOCKS5 dial to microsocks (a thread "
                 "per client) and its connect to the origin, so the difference between broad and narrow and between the node alone and the "
                 "fleet node is within the noise of a shared 2-core machine unless it exceeds a few tenths of a millisecond.")
    lines.append("")
    path = os.environ.get("RAMA_BENCH_OUT") or os.path.join(ROOT, "benchmarks", "results", name)
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path} ({time.monotonic() - t_start:.0f} s)")
    srv.close()


def diagnostics():
    """What the nodes' logs say went wrong: Akka.Remote's discarded oversized messages (by type, with sizes), members
    marked unreachable, delayed heartbeats."""
    import re
    out = ["What the fleet nodes' logs recorded over the whole run (lighthouse and nodes, counted by the script):", ""]
    oversized = collections.defaultdict(list)
    counts = collections.Counter()
    limit = None
    for log in sorted(os.listdir(WORK)):
        if not log.endswith(".log") or log in ("alone.log", "microsocks.log"):
            continue
        with open(os.path.join(WORK, log), errors="replace") as fh:
            for line in fh:
                m = re.search(r"max allowed size (\d+) bytes, actual size of encoded ([\w.+]+) was (\d+) bytes", line)
                if m:
                    limit = m.group(1)
                    oversized[m.group(2)].append(int(m.group(3)))
                if "Marking node(s) as UNREACHABLE" in line:
                    counts[(log, "members marked UNREACHABLE")] += 1
                for marker, what in (("SBR took decision", "split-brain resolver decisions (downing)"),
                                     ("was downed by the fleet", "node downed by the fleet and exited"),
                                     ("the partition's owner did not answer", "load: partition owner did not answer")):
                    if marker in line:
                        counts[(log, what)] += 1
                if "Scheduled sending of heartbeat was delayed" in line:
                    counts[(log, "heartbeat sending delayed")] += 1
    if oversized:
        out.append(f"- Akka.Remote `OversizedPayloadException` (message discarded; `akka.remote.dot-netty.tcp.maximum-frame-size` {limit} bytes, Akka's default):")
        out += [f"  - `{t}`: {len(xs)} discarded, {min(xs):,}-{max(xs):,} bytes" for t, xs in sorted(oversized.items())]
    else:
        out.append("- no oversized (discarded) remote messages")
    if counts:
        out += [f"- {log}: {what} x {c}" for (log, what), c in sorted(counts.items())]
    else:
        out.append("- no member marked unreachable, no delayed heartbeat")
    return out + [""]


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
        if not os.environ.get("RAMA_BENCH_KEEP"):
            shutil.rmtree(WORK, ignore_errors=True)
        else:
            print("kept", WORK)
