#!/usr/bin/python3
"""16,000 idle tunnels against rama-node(s) under the real descriptor limit (issue 15, item 6).

Starts nothing itself: give it the node's pid and port and an origin (an nginx that answers GET /1k and keeps
connections); or several nodes of a fleet (--pid and --proxy as comma-separated lists, in the same order), which take
the tunnels in turn, as a load balancer in front of the fleet would hand them out. Opens --count CONNECT tunnels (64 handshakes at a time), each used for one request and then held; then
--socks extra SOCKS5 tunnels past the limit; then uses every held tunnel again; then closes them all and opens a new
tunnel to see the node recover. Prints key=value lines: how many were held, how each refused one was answered, the
node's CPU seconds and RSS at each step, and whether the process stayed up.

  benchmarks/idle16k.py --pid PID --proxy 127.0.0.1:8080 --target 127.0.0.1:8000 --count 16000
  benchmarks/idle16k.py --pid PID1,PID2 --proxy 127.0.0.1:8080,127.0.0.1:8081 --target 127.0.0.1:8000 --count 16000
"""
import argparse, asyncio, collections, os, resource, time


def proc_one(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return cpu, rss, fds


def proc(pids):
    """CPU seconds, RSS KiB and descriptors summed over the nodes."""
    each = [proc_one(pid) for pid in pids]
    return sum(e[0] for e in each), sum(e[1] for e in each), sum(e[2] for e in each)


def per_node(pids):
    return " ".join(f"node{i}_fds={proc_one(pid)[2]}" for i, pid in enumerate(pids))


async def read_head(reader):
    return (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode("latin-1")


async def connect_tunnel(proxy, target, request):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*proxy), 30)
    try:
        writer.write(f"CONNECT {target[0]}:{target[1]} HTTP/1.1\r\nHost: {target[0]}:{target[1]}\r\n\r\n".encode())
        head = await read_head(reader)
        status = head.split("\r\n", 1)[0]
        if not status.startswith("HTTP/1.1 200"):
            body = await asyncio.wait_for(reader.read(4096), 5)
            writer.close()
            return None, status + " | " + body.decode("latin-1").strip()
        await use(reader, writer, request)
        return (reader, writer), "200"
    except BaseException:
        writer.close()
        raise


async def use(reader, writer, request):
    writer.write(request)
    head = await read_head(reader)
    length = int([l.split(":", 1)[1] for l in head.split("\r\n") if l.lower().startswith("content-length:")][0])
    await asyncio.wait_for(reader.readexactly(length), 30)
    if not head.startswith("HTTP/1.1 200"):
        raise IOError("origin answered " + head.split("\r\n", 1)[0])


async def socks5(proxy, target):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*proxy), 30)
    try:
        writer.write(b"\x05\x01\x00")
        method = await asyncio.wait_for(reader.readexactly(2), 10)
        host = bytes(int(p) for p in target[0].split("."))
        writer.write(b"\x05\x01\x00\x01" + host + target[1].to_bytes(2, "big"))
        reply = await asyncio.wait_for(reader.readexactly(2), 10)
        return f"socks5 method {method[1]} reply {reply[1]}"
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError) as e:
        return f"socks5 {type(e).__name__}"
    finally:
        writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pid", required=True, help="the node's pid, or the nodes' pids comma-separated")
    p.add_argument("--proxy", required=True, help="host:port, or one per node comma-separated (same order as --pid)")
    p.add_argument("--target", required=True)
    p.add_argument("--count", type=int, default=16000)
    p.add_argument("--socks", type=int, default=50)
    a = p.parse_args()
    pids = [int(p) for p in a.pid.split(",")]
    proxies = [(p.rsplit(":", 1)[0], int(p.rsplit(":", 1)[1])) for p in a.proxy.split(",")]
    if len(pids) != len(proxies):
        raise SystemExit("--pid and --proxy must name as many nodes")
    proxy = proxies[0]
    target = (a.target.rsplit(":", 1)[0], int(a.target.rsplit(":", 1)[1]))
    request = f"GET /1k HTTP/1.1\r\nHost: {a.target}\r\n\r\n".encode()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"client_nofile={hard}")
    for i, pid in enumerate(pids):
        with open(f"/proc/{pid}/limits") as f:
            print(f"node{i}_" + [l for l in f if l.startswith("Max open files")][0].strip().replace("  ", " ").replace(" ", "_", 3))

    cpu0, rss0, fds0 = proc(pids)
    print(f"before: cpu_s={cpu0:.2f} rss_kib={rss0} fds={fds0}")
    held, answers = [], collections.Counter()
    gate = asyncio.Semaphore(64)
    started = time.monotonic()

    async def one(i):
        async with gate:
            try:
                tunnel, answer = await connect_tunnel(proxies[i % len(proxies)], target, request)
            except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError, OSError, IndexError) as e:
                answers[f"error {type(e).__name__}"] += 1
                return
            answers[answer] += 1
            if tunnel:
                held.append(tunnel)

    await asyncio.gather(*(one(i) for i in range(a.count)))
    elapsed = time.monotonic() - started
    await asyncio.sleep(3)
    cpu1, rss1, fds1 = proc(pids)
    print(f"attempted={a.count} held={len(held)} seconds={elapsed:.1f}")
    for answer, n in answers.most_common():
        print(f"answer[{n}]={answer}")
    print(f"held: cpu_s={cpu1:.2f} (+{cpu1 - cpu0:.2f}) rss_kib={rss1} (+{rss1 - rss0}, {((rss1 - rss0) * 1024 // max(1, len(held)))} B/tunnel) fds={fds1} {per_node(pids)}")

    # Past the limit (one node: it is full; a fleet that held everything: these are simply served).
    socks = collections.Counter([await socks5(proxies[i % len(proxies)], target) for i in range(a.socks)])
    for answer, n in socks.most_common():
        print(f"socks5_past_limit[{n}]={answer}")

    # Every held tunnel still works.
    ok = bad = 0
    for reader, writer in held:
        try:
            await use(reader, writer, request)
            ok += 1
        except Exception:
            bad += 1
    cpu2, rss2, fds2 = proc(pids)
    print(f"reused: ok={ok} failed={bad} cpu_s={cpu2:.2f} rss_kib={rss2}")

    for _, writer in held:
        writer.close()
    held.clear()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc(pids)[2] > fds0 + 64 * len(pids):
        await asyncio.sleep(0.2)
    t0 = time.monotonic()
    tunnel, answer = await connect_tunnel(proxy, target, request)
    print(f"recovered: answer={answer} after_close_ms={(time.monotonic() - t0) * 1000:.0f}")
    tunnel[1].close()
    cpu3, rss3, fds3 = proc(pids)
    print(f"after: cpu_s={cpu3:.2f} rss_kib={rss3} fds={fds3} alive={all(os.path.exists(f'/proc/{pid}') for pid in pids)}")


asyncio.run(main())
