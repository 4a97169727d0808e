using System.Net;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Actors.Listeners;

/// <summary>One listener of the node: its name (a configuration entry's), endpoint and the stack serving its connections.</summary>
public sealed record ListenerSpec(string Name, IPEndPoint Endpoint, IService<ConnectionContext, Unit> Stack)
{
    /// <summary>Accept-side socket options (backlog, no-delay); null for the defaults.</summary>
    public TcpServerOptions? ServerOptions { get; init; }
}

/// <summary>
/// Parent of the node's listeners (<c>/user/rama-listeners</c>): one child per endpoint, restarted on a fault (at
/// most 10 times a minute, then stopped), and the fan-out point for bind, unbind and drain during start-up and
/// coordinated shutdown. It never waits inside a message: fan-outs are asks piped back to the asker, so a status
/// query is answered at once, also during a drain.
/// </summary>
internal sealed partial class ListenerSupervisor : ReceiveActor
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);
    private readonly ILogger _logger;
    private readonly IReadOnlyList<IService<ConnectionContext, Unit>> _stacks;
    private readonly List<IActorRef> _listeners = [];
    private bool _draining;

    public ListenerSupervisor(IReadOnlyList<ListenerSpec> listeners, ILogger logger)
    {
        _logger = logger;
        _stacks = [.. listeners.Select(l => l.Stack).Distinct()];
        foreach (var listener in listeners)
        {
            var child = Context.ActorOf(ListenerActor.Props(listener.Name, listener.Endpoint, listener.Stack, listener.ServerOptions, logger), ChildName(listener.Name));
            Context.Watch(child);
            _listeners.Add(child);
        }

        Receive<BindAllListeners>(_ => Fan<ListenerBound, AllListenersBound>(BindListener.Instance, AskTimeout, bound => new AllListenersBound(bound)));
        Receive<UnbindAllListeners>(_ => Fan<ListenerUnbound, AllListenersUnbound>(UnbindListener.Instance, AskTimeout, unbound =>
        {
            LogUnbound(logger, unbound.Length, unbound.Sum(u => u.InFlight));
            return new AllListenersUnbound(unbound.Length, unbound.Sum(u => u.InFlight));
        }));
        Receive<DrainAllListeners>(drain =>
        {
            _draining = true;
            Fan<ListenerDrained, AllListenersDrained>(new DrainListener(drain.Timeout), drain.Timeout + AskTimeout, drained =>
            {
                var result = new AllListenersDrained(drained.Sum(d => d.ClosedAfterTimeout), drained.Sum(d => d.OpenConnections));
                LogDrained(logger, result.ClosedAfterTimeout, result.OpenConnections);
                return result;
            });
        });
        Receive<GetListenerStatus>(_ =>
        {
            var draining = _draining;
            Fan<ListenerStatus, ListenersStatus>(GetListenerStatus.Instance, AskTimeout, statuses => new ListenersStatus(statuses, draining));
        });
        Receive<Terminated>(terminated => _listeners.Remove(terminated.ActorRef));
    }

    public static Props Props(IReadOnlyList<ListenerSpec> listeners, ILogger logger) =>
        Akka.Actor.Props.Create(() => new ListenerSupervisor(listeners, logger));

    /// <summary>An actor name for a listener name (Akka allows letters, digits and -_.*$+:@&amp;=,!~';).</summary>
    internal static string ChildName(string name) =>
        "listener-" + Uri.EscapeDataString(name).Replace('%', '$');

    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(10, TimeSpan.FromMinutes(1), ex => ex is ActorInitializationException ? Directive.Stop : Directive.Restart);

    /// <summary>Children (the listeners) are stopped first; then the stacks release what they own (origin pools).</summary>
    protected override void PostStop()
    {
        foreach (var stack in _stacks)
        {
            if (stack is IAsyncDisposable owned)
            {
                _ = owned.DisposeAsync().AsTask();
            }
        }
    }

    /// <summary>Asks every live listener, and pipes the combined answer (or the first failure) to the sender.</summary>
    private void Fan<TAnswer, TResult>(object message, TimeSpan timeout, Func<TAnswer[], TResult> combine)
    {
        var asks = _listeners.Select(l => l.Ask<TAnswer>(message, timeout)).ToArray();
        Task.WhenAll(asks).PipeTo(Sender, success: answers => combine(answers)!);
    }

    [LoggerMessage(EventId = 5010, Level = LogLevel.Information, Message = "Unbound {Count} listeners; {InFlight} connections in flight")]
    private static partial void LogUnbound(ILogger logger, int count, int inFlight);

    [LoggerMessage(EventId = 5011, Level = LogLevel.Information, Message = "Drain finished: closed {Closed} connections after the drain timeout; open connections: {Open}")]
    private static partial void LogDrained(ILogger logger, int closed, int open);
}
