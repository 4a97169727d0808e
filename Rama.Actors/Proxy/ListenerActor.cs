using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Rama.Actors.Actor;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Actors.Proxy;

/// <summary>
/// One bound endpoint: owns the accept loop (a <see cref="TcpServer"/>) and the per-connection
/// pipelines it runs; unbinds, drains and closes on request. A restart (after a fault) closes the
/// old socket in PostStop and binds again.
/// </summary>
internal sealed partial class ListenerActor : ReceiveActor
{
    private IPEndPoint _endpoint;
    private readonly IService<ConnectionContext, Unit> _stack;
    private readonly ILogger _logger;
    private TcpServer? _server;

    public ListenerActor(IPEndPoint endpoint, IService<ConnectionContext, Unit> stack, ILogger logger)
    {
        _endpoint = endpoint;
        _stack = stack;
        _logger = logger;

        Receive<BindListener>(_ => OnBind());
        Receive<Rebind>(rebind =>
        {
            _endpoint = rebind.Endpoint;
            OnBind();
        });
        Receive<UnbindListener>(_ => OnUnbind());
        Receive<DrainListener>(OnDrain);
        Receive<GetListenerStatus>(_ => Sender.Tell(Status()));
    }

    private string EndpointText => (_server?.LocalEndPoint ?? _endpoint).ToString();

    private void OnBind()
    {
        if (_server is null)
        {
            try
            {
                _server = TcpServer.Bind(_endpoint, logger: _logger);
            }
            catch (SocketException ex)
            {
                LogBindFailed(_logger, _endpoint.ToString(), ex.SocketErrorCode);
                Sender.Tell(new Status.Failure(new InvalidOperationException($"cannot listen on {_endpoint}: {ex.Message}", ex)));
                Context.Stop(Self);
                return;
            }

            _server.Start(_stack);
            // A restart rebinds the same port, even when port 0 was asked for the first time.
            _endpoint = _server.LocalEndPoint;
            LogBound(_logger, EndpointText);
        }

        Sender.Tell(new ListenerBound(EndpointText));
    }

    private void OnUnbind()
    {
        var replyTo = Sender;
        var endpoint = EndpointText;
        if (_server is null)
        {
            replyTo.Tell(new ListenerUnbound(endpoint, 0));
            return;
        }

        var server = _server;
        server.UnbindAsync().ContinueWith(
            _ => replyTo.Tell(new ListenerUnbound(endpoint, server.OpenConnections)),
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private void OnDrain(DrainListener drain)
    {
        var replyTo = Sender;
        var endpoint = EndpointText;
        var server = _server;
        if (server is null)
        {
            replyTo.Tell(new ListenerDrained(endpoint, 0, 0));
            return;
        }

        _ = DrainAsync(server, endpoint, drain.Timeout, replyTo, _logger);
    }

    // Runs off the actor: touches only the server (thread-safe) and replies by message.
    private static async Task DrainAsync(TcpServer server, string endpoint, TimeSpan timeout, IActorRef replyTo, ILogger logger)
    {
        await server.UnbindAsync().ConfigureAwait(false);
        var closed = 0;
        if (!await server.DrainAsync(timeout).ConfigureAwait(false))
        {
            closed = server.AbortAll("drain timeout");
            await server.DrainAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        }

        LogDrained(logger, endpoint, closed, server.OpenConnections);
        replyTo.Tell(new ListenerDrained(endpoint, closed, server.OpenConnections));
    }

    private ListenerStatus Status() => new(EndpointText, _server?.IsBound ?? false, _server?.OpenConnections ?? 0, _server?.AcceptedConnections ?? 0);

    protected override void PostStop()
    {
        var server = _server;
        _server = null;
        if (server is not null)
        {
            // Closes the listening socket at once and aborts whatever a drain left open.
            _ = server.DisposeAsync().AsTask();
        }
    }

    // A restart builds a new instance from the original Props (maybe port 0): the old instance hands
    // over the port it had, by a message to itself that the new instance processes first.
    protected override void PreRestart(Exception reason, object? message)
    {
        var endpoint = _server?.LocalEndPoint ?? _endpoint;
        base.PreRestart(reason, message);
        Self.Tell(new Rebind(endpoint), ActorRefs.Nobody);
    }

    private sealed record Rebind(IPEndPoint Endpoint);

    [LoggerMessage(EventId = 5000, Level = LogLevel.Information, Message = "Listener bound {Endpoint}")]
    private static partial void LogBound(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 5001, Level = LogLevel.Error, Message = "Listener cannot bind {Endpoint}: {Error}")]
    private static partial void LogBindFailed(ILogger logger, string endpoint, SocketError error);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Listener {Endpoint} drained: closed {Closed} connections after the drain timeout; open connections: {Open}")]
    private static partial void LogDrained(ILogger logger, string endpoint, int closed, int open);
}
