using BenchmarkDotNet.Attributes;
using Akka.Actor;

namespace Rama.Benchmarks;

/// <summary>Akka.NET actor messaging on this machine: Tell throughput (10,000 messages to one actor) and Ask round-trip latency.</summary>
public class ActorBenchmarks
{
    private const int Messages = 10_000;
    private ActorSystem _system = null!;
    private IActorRef _counter = null!;
    private IActorRef _echo = null!;

    [GlobalSetup]
    public void Setup()
    {
        _system = ActorSystem.Create("bench");
        _counter = _system.ActorOf(Props.Create(() => new Counter()), "counter");
        _echo = _system.ActorOf(Props.Create(() => new Echo()), "echo");
    }

    [GlobalCleanup]
    public void Cleanup() => _system.Terminate().GetAwaiter().GetResult();

    [Benchmark(Description = "Tell 10,000 to one actor", OperationsPerInvoke = Messages)]
    public async Task Tell()
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _counter.Tell(new Expect(Messages, done));
        for (var i = 0; i < Messages; i++)
        {
            _counter.Tell(Ping.Instance);
        }

        await done.Task;
    }

    [Benchmark(Description = "Ask round-trip")]
    public Task<Ping> Ask() => _echo.Ask<Ping>(Ping.Instance, TimeSpan.FromSeconds(5));

    public sealed class Ping
    {
        public static readonly Ping Instance = new();
    }

    private sealed record Expect(int Count, TaskCompletionSource Done);

    private sealed class Counter : ReceiveActor
    {
        private int _left;
        private TaskCompletionSource? _done;

        public Counter()
        {
            Receive<Expect>(e =>
            {
                _left = e.Count;
                _done = e.Done;
            });
            Receive<Ping>(_ =>
            {
                if (--_left == 0)
                {
                    _done!.SetResult();
                }
            });
        }
    }

    private sealed class Echo : ReceiveActor
    {
        public Echo() => Receive<Ping>(p => Sender.Tell(p, Self));
    }
}
