"""A gRPC peer without codegen (generic handlers, bytes in and out) for the reverse-proxy tests.

server:               prints "PORT <n>", then "CANCELLED <method>" when a handler sees its RPC cancelled.
client <port> <case>: runs one case against 127.0.0.1:<port>, prints what it saw, exits 0 when it saw what the case expects.
"""
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "rama.test.Echo"
OPTIONS = [("grpc.enable_http_proxy", 0)]


def say(text):
    print(text, flush=True)


def unary(request, context):
    if request == b"fail":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request: fail")
    return b"echo:" + request


def bidi(requests, context):
    for message in requests:
        yield b"re:" + message


def hang(requests, context):
    # one answer, then wait for the client to go away
    next(requests)
    yield b"first"
    deadline = time.monotonic() + 20
    while context.is_active() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not context.is_active():
        say("CANCELLED Hang")


def slow(request, context):
    deadline = time.monotonic() + 20
    while context.is_active() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not context.is_active():
        say("CANCELLED Slow")
    return b"late"


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=OPTIONS)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Hang": grpc.stream_stream_rpc_method_handler(hang),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    say(f"PORT {port}")
    sys.stdin.read()  # until the test closes our stdin
    server.stop(0)


def client(port, case):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)
    grpc.channel_ready_future(channel).result(timeout=10)
    method = lambda name, kind: getattr(channel, kind)(f"/{SERVICE}/{name}")
    if case == "unary":
        answer = method("Unary", "unary_unary")(b"hello", timeout=10)
        say(answer.decode())
        return answer == b"echo:hello"
    if case == "bidi":
        sent = [f"m{i}".encode() for i in range(100)]
        got = list(method("Bidi", "stream_stream")(iter(sent), timeout=20))
        say(f"received {len(got)}")
        return got == [b"re:" + m for m in sent]
    if case == "error":
        try:
            method("Unary", "unary_unary")(b"fail", timeout=10)
        except grpc.RpcError as error:
            say(f"{error.code().name} {error.details()}")
            return error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details() == "bad request: fail"
        return False
    if case == "cancel":
        stop = threading.Event()

        def requests():
            yield b"start"
            stop.wait(20)

        call = method("Hang", "stream_stream")(requests(), timeout=20)
        first = next(call)
        say(f"got {first.decode()}")
        call.cancel()
        stop.set()
        say("client cancelled")
        return first == b"first"
    if case == "deadline":
        started = time.monotonic()
        try:
            # 2 s: long enough for the call to reach the server through the proxy's first upstream dial on a loaded
            # machine (at 0.5 s a CI run saw the deadline pass before the server's handler started: nothing to cancel).
            method("Slow", "unary_unary")(b"x", timeout=2.0)
        except grpc.RpcError as error:
            say(f"{error.code().name} after {time.monotonic() - started:.2f} s")
            return error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        return False
    say(f"unknown case {case}")
    return False


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve()
    else:
        sys.exit(0 if client(int(sys.argv[2]), sys.argv[3]) else 1)
