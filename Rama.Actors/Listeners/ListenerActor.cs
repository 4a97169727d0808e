using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Actors.Listeners;

/// <summary>
/// One bound endpoint: owns the accept loop (a <see cref="TcpServer"/>) and the per-connection pipelines it runs
/// (a tracked Task each, not an actor per connection); unbinds, drains and closes on request. Work that waits
/// (unbind, drain) runs off the actor and comes back with <c>PipeTo</c>, so status is answered at once throughout.
/// A supervised restart closes the old socket in <see cref="PostStop"/> and binds the same port again.
/// </summary>
internal sealed partial class ListenerActor : ReceiveActor
{
    private readonly string _name;
    private readonly IService<ConnectionContext, Unit> _stack;
    private readonly TcpServerOptions? _serverOptions;
    private readonly ILogger _logger;
    private IPEndPoint _endpoint;
    private TcpServer? _server;
    private bool _draining;

    public ListenerActor(string name, IPEndPoint endpoint, IService<ConnectionContext, Unit> stack, TcpServerOptions? serverOptions, ILogger logger)
    {
        _name = name;
        _endpoint = endpoint;
        _stack = stack;
        _serverOptions = serverOptions;
        _logger = logger;

        Receive<BindListener>(_ => OnBind(reply: true));
        Receive<Rebind>(rebind =>
        {
            _endpoint = rebind.Endpoint;
            OnBind(reply: false);
        });
        Receive<UnbindListener>(_ => OnUnbind());
        Receive<DrainListener>(OnDrain);
        Receive<GetListenerStatus>(_ => Sender.Tell(Status()));
    }

    public static Props Props(string name, IPEndPoint endpoint, IService<ConnectionContext, Unit> stack, TcpServerOptions? serverOptions, ILogger logger) =>
        Akka.Actor.Props.Create(() => new ListenerActor(name, endpoint, stack, serverOptions, logger));

    private string EndpointText => (_server?.LocalEndPoint ?? _endpoint).ToString();

    private void OnBind(bool reply)
    {
        if (_server is null)
        {
            try
            {
                _server = TcpServer.Bind(_endpoint, (_serverOptions ?? new TcpServerOptions()) with { Name = _name }, _logger);
            }
            catch (SocketException ex)
            {
                LogBindFailed(_logger, _name, _endpoint.ToString(), ex.SocketErrorCode);
                var failure = new ListenerBindException(_name, _endpoint.ToString(), ex);
                if (reply)
                {
                    Sender.Tell(new Status.Failure(failure));
                    Context.Stop(Self);
                    return;
                }

                // The rebind after a restart failed: a fault, so the supervisor decides (restart again, or stop after too many).
                throw failure;
            }

            _server.Start(_stack);
            // A restart rebinds the same port, even when port 0 was asked for the first time.
            _endpoint = _server.LocalEndPoint;
            _draining = false;
            LogBound(_logger, _name, EndpointText);
        }

        if (reply)
        {
            Sender.Tell(new ListenerBound(_name, EndpointText));
        }
    }

    private void OnUnbind()
    {
        var endpoint = EndpointText;
        if (_server is not { } server)
        {
            Sender.Tell(new ListenerUnbound(_name, endpoint, 0));
            return;
        }

        var name = _name;
        server.UnbindAsync().PipeTo(Sender, success: () => new ListenerUnbound(name, endpoint, server.OpenConnections));
    }

    private void OnDrain(DrainListener drain)
    {
        var endpoint = EndpointText;
        if (_server is not { } server)
        {
            Sender.Tell(new ListenerDrained(_name, endpoint, 0, 0));
            return;
        }

        _draining = true;
        DrainAsync(server, _name, endpoint, drain.Timeout, _logger).PipeTo(Sender);
    }

    // Runs off the actor: touches only the server (thread-safe) and answers through PipeTo.
    private static async Task<ListenerDrained> DrainAsync(TcpServer server, string name, string endpoint, TimeSpan timeout, ILogger logger)
    {
        await server.UnbindAsync().ConfigureAwait(false);
        var closed = 0;
        if (!await server.DrainAsync(timeout).ConfigureAwait(false))
        {
            closed = server.AbortAll("drain timeout");
            await server.DrainAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        }

        LogDrained(logger, name, endpoint, closed, server.OpenConnections);
        return new ListenerDrained(name, endpoint, closed, server.OpenConnections);
    }

    private ListenerStatus Status() =>
        new(_name, EndpointText, _server?.IsBound ?? false, _draining, _server?.OpenConnections ?? 0, _server?.AcceptedConnections ?? 0);

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

    // A restart builds a new instance from the original Props (maybe port 0): the old instance hands over the port
    // it had, by a message to itself that the new instance processes first.
    protected override void PreRestart(Exception reason, object message)
    {
        var endpoint = _server?.LocalEndPoint ?? _endpoint;
        base.PreRestart(reason, message);
        Self.Tell(new Rebind(endpoint), ActorRefs.NoSender);
    }

    private sealed record Rebind(IPEndPoint Endpoint);

    [LoggerMessage(EventId = 5000, Level = LogLevel.Information, Message = "Listener {Name} bound {Endpoint}")]
    private static partial void LogBound(ILogger logger, string name, string endpoint);

    [LoggerMessage(EventId = 5001, Level = LogLevel.Error, Message = "Listener {Name} cannot bind {Endpoint}: {Error}")]
    private static partial void LogBindFailed(ILogger logger, string name, string endpoint, SocketError error);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Listener {Name} {Endpoint} drained: closed {Closed} connections after the drain timeout; open connections: {Open}")]
    private static partial void LogDrained(ILogger logger, string name, string endpoint, int closed, int open);
}
