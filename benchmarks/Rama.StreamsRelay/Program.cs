using System.Net;
using System.Runtime.InteropServices;
using Akka.Actor;
using Akka.Configuration;
using Akka.Streams;
using Akka.Streams.Dsl;

namespace Rama.StreamsRelay;

/// <summary>
/// A plain TCP relay (no CONNECT handshake, like haproxy in mode tcp) written the way an Akka.NET
/// user writes one: <c>TcpStream().Bind</c> and, per accepted connection, an
/// <c>OutgoingConnection</c> to the target joined with the incoming flow, so every byte goes
/// through an Akka.Streams graph. It is the benchmark's measure of the design choice in issue 11
/// item 4 (bytes on System.IO.Pipelines and the epoll loops, not on a per-connection Akka.Streams
/// graph); see benchmarks/README.md.
///
/// Usage: rama-streamsrelay LISTEN_IP:PORT TARGET_IP:PORT [--akka-defaults]
/// Binds 127.0.0.1 only, dials only the target. Prints "ready ..." once bound; stops on SIGTERM/SIGINT.
/// </summary>
internal static class Program
{
    // The settings a user tuning a byte relay would set; --akka-defaults runs with Akka's own, which are for small
    // messages. akka.io.tcp: 64 KiB frames (default 4 KiB) and socket buffers twice the frame, as the reference
    // configuration advises (default 8 KiB each). Akka.Streams' input buffers stay at their defaults (4 initial,
    // 16 max elements; an element is one read of up to a frame). A pooled receive buffer
    // (buffer-pool = direct-buffer-pool) measured no different here and is left off.
    private const string Tuned = """
        akka.io.tcp {
          maximum-frame-size = 64k
          send-buffer-size = 128k
          receive-buffer-size = 128k
        }
        """;

    private const string Common = """
        akka.loglevel = WARNING
        akka.stdout-loglevel = WARNING
        akka.log-dead-letters = off
        akka.log-dead-letters-during-shutdown = off
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        """;

    public static async Task<int> Main(string[] args)
    {
        if (args.Length < 2 || !IPEndPoint.TryParse(args[0], out var listen) || !IPEndPoint.TryParse(args[1], out var target)
            || args.Skip(2).Any(a => a != "--akka-defaults"))
        {
            Console.Error.WriteLine("usage: rama-streamsrelay LISTEN_IP:PORT TARGET_IP:PORT [--akka-defaults]");
            return 2;
        }
        if (!listen.Address.Equals(IPAddress.Loopback))
        {
            Console.Error.WriteLine($"refusing to bind {listen}: this benchmark peer binds 127.0.0.1 only");
            return 2;
        }
        var tuned = !args.Contains("--akka-defaults");

        var config = ConfigurationFactory.ParseString(Common + (tuned ? "\n" + Tuned : ""));
        using var system = ActorSystem.Create("streams-relay", config);
        var materializer = system.Materializer();
        var tcp = system.TcpStream();

        // Per connection: client bytes -> OutgoingConnection(target) -> origin bytes back to the client.
        // halfClose on both sides, as a relay must (a client's FIN reaches the origin; the answer still flows back).
        var incoming = tcp.Bind(listen.Address.ToString(), listen.Port, backlog: 1024, halfClose: true);
        var binding = await incoming
            .To(Sink.ForEach<Tcp.IncomingConnection>(connection =>
                connection.HandleWith(tcp.OutgoingConnection(target, halfClose: true), materializer)))
            .Run(materializer);

        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });

        Console.WriteLine($"ready listen={binding.LocalAddress} target={target} settings={(tuned ? "tuned" : "akka-defaults")}");
        await stop.Task;

        await binding.Unbind();
        await CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance);
        Console.WriteLine("stopped");
        return 0;
    }
}
