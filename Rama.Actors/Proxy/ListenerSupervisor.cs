using System.Net;
using Microsoft.Extensions.Logging;
using Rama.Actors.Actor;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Actors.Proxy;

/// <summary>
/// Parent of the node's listeners (<c>/user/proxy-listeners</c>): one child per endpoint, restarted
/// on a fault (at most 10 times a minute, then stopped), and the fan-out point for bind, unbind and
/// drain during start-up and coordinated shutdown.
/// </summary>
internal sealed partial class ListenerSupervisor : ReceiveActor
{
    private static readonly TimeSpan BindTimeout = TimeSpan.FromSeconds(5);
    private readonly List<IActorRef> _listeners = [];
    private readonly ILogger _logger;
    private readonly IService<ConnectionContext, Unit>[] _stacks;

    public ListenerSupervisor(IReadOnlyList<IPEndPoint> endpoints, IService<ConnectionContext, Unit> stack, ILoggerFactory loggerFactory)
        : this([.. endpoints.Select(e => (e, stack))], loggerFactory)
    {
    }

    /// <summary>One listener per endpoint, each with its own stack (several endpoints may share one).</summary>
    public ListenerSupervisor(IReadOnlyList<(IPEndPoint Endpoint, IService<ConnectionContext, Unit> Stack)> listeners, ILoggerFactory loggerFactory)
    {
        _logger = loggerFactory.CreateLogger("Rama.Actors.Proxy.Listener");
        _stacks = [.. listeners.Select(l => l.Stack).Distinct()];
        for (var i = 0; i < listeners.Count; i++)
        {
            var (endpoint, stack) = listeners[i];
            var logger = _logger;
            _listeners.Add(Context.ActorOf(Props.Create(() => new ListenerActor(endpoint, stack, logger)), $"listener-{i}"));
        }

        ReceiveAsync<BindAllListeners>(_ => ReplyAsync(BindAllAsync));
        ReceiveAsync<UnbindAllListeners>(_ => ReplyAsync(UnbindAllAsync));
        ReceiveAsync<DrainAllListeners>(drain => ReplyAsync(() => DrainAllAsync(drain.Timeout)));
        ReceiveAsync<GetListenerStatus>(_ => ReplyAsync(StatusAsync));
    }

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

    private async Task ReplyAsync(Func<Task<object>> work)
    {
        var replyTo = Sender;
        try
        {
            replyTo.Tell(await work());
        }
        catch (Exception ex)
        {
            replyTo.Tell(new Status.Failure(ex));
        }
    }

    private async Task<object> BindAllAsync()
    {
        var bound = await Task.WhenAll(_listeners.Select(l => l.Ask<ListenerBound>(BindListener.Instance, BindTimeout)));
        return new AllListenersBound([.. bound.Select(b => b.Endpoint)]);
    }

    private async Task<object> UnbindAllAsync()
    {
        var unbound = await Task.WhenAll(_listeners.Select(l => l.Ask<ListenerUnbound>(UnbindListener.Instance, BindTimeout)));
        LogUnbound(_logger, unbound.Length, unbound.Sum(u => u.InFlight));
        return Done.Instance;
    }

    private async Task<object> DrainAllAsync(TimeSpan timeout)
    {
        var drained = await Task.WhenAll(_listeners.Select(l => l.Ask<ListenerDrained>(new DrainListener(timeout), timeout + TimeSpan.FromSeconds(5))));
        var closed = drained.Sum(d => d.ClosedAfterTimeout);
        var open = drained.Sum(d => d.OpenConnections);
        LogDrained(_logger, closed, open);
        return new AllListenersDrained(closed, open);
    }

    private async Task<object> StatusAsync()
    {
        var statuses = await Task.WhenAll(_listeners.Select(l => l.Ask<ListenerStatus>(GetListenerStatus.Instance, BindTimeout)));
        return statuses;
    }

    [LoggerMessage(EventId = 5010, Level = LogLevel.Information, Message = "Unbound {Count} listeners; {InFlight} connections in flight")]
    private static partial void LogUnbound(ILogger logger, int count, int inFlight);

    [LoggerMessage(EventId = 5011, Level = LogLevel.Information, Message = "Drain finished: closed {Closed} connections after the drain timeout; open connections: {Open}")]
    private static partial void LogDrained(ILogger logger, int closed, int open);
}
