using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Rama.Admin.Admin;

/// <summary>
/// The admin endpoint's listener: one accept loop, one task per connection (bounded), each reading one request line
/// (at most <see cref="AdminProtocol.MaxRequestBytes"/>, within <see cref="AdminProtocol.RequestTimeout"/>), checking
/// the token, running the palette's command and ending with an "end" frame.
/// </summary>
internal sealed partial class AdminServer : IAsyncDisposable
{
    /// <summary>Connections served at once; more are answered with an error and closed. 32: an operator's tools, not traffic.</summary>
    internal const int MaxConnections = 32;

    private static readonly TimeSpan StopWait = TimeSpan.FromSeconds(3);
    private readonly AdminOptions _options;
    private readonly IReadOnlyDictionary<string, IAdminPalette> _palettes;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly byte[]? _tokenHash;
    private readonly CancellationTokenSource _stopping = new();
    private readonly HashSet<Task> _connections = [];
    private Socket? _listener;
    private Task? _acceptLoop;
    private int _stopped;

    private readonly AdminHttp _http;

    /// <param name="readiness">The conditions of <c>GET /readyz</c> (none: ready while the endpoint serves).</param>
    /// <param name="metrics">Serves <c>GET /metrics</c> (the Prometheus exporter's middleware); null: 404.</param>
    /// <param name="services">The services the metrics middleware's context sees.</param>
    public AdminServer(AdminOptions options, IEnumerable<IAdminPalette> palettes, ILogger logger, TimeProvider time,
        IEnumerable<IReadinessCheck>? readiness = null, Microsoft.AspNetCore.Http.RequestDelegate? metrics = null, IServiceProvider? services = null)
    {
        _options = options;
        _logger = logger;
        _time = time;
        var byName = new SortedDictionary<string, IAdminPalette>(StringComparer.OrdinalIgnoreCase);
        foreach (var palette in palettes)
        {
            if (!byName.TryAdd(palette.Name, palette))
            {
                throw new InvalidOperationException($"two admin palettes are named '{palette.Name}'");
            }
        }

        _palettes = byName;
        _tokenHash = options.Token is null ? null : SHA256.HashData(Encoding.UTF8.GetBytes(options.Token));
        _http = new AdminHttp([.. readiness ?? []], metrics, services, TokenMatches, logger);
    }

    public IPEndPoint? BoundEndpoint { get; private set; }

    public void Start()
    {
        var socket = new Socket(_options.Bind.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(_options.Bind);
            socket.Listen(64);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new AdminBindException(_options.Bind, ex);
        }

        _listener = socket;
        BoundEndpoint = (IPEndPoint)socket.LocalEndPoint!;
        LogListening(_logger, BoundEndpoint, _options.Token is null ? "no token" : "token required", string.Join(", ", _palettes.Keys));
        _acceptLoop = AcceptLoopAsync(socket);
    }

    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        Task[] pending;
        lock (_connections)
        {
            pending = [.. _connections, _acceptLoop ?? Task.CompletedTask];
        }

        try
        {
            await Task.WhenAll(pending).WaitAsync(StopWait).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            LogStopTimedOut(_logger, pending.Count(t => !t.IsCompleted));
        }

        if (BoundEndpoint is not null)
        {
            LogClosed(_logger, BoundEndpoint);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stopping.Dispose();
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return; // closed by StopAsync
            }

            lock (_connections)
            {
                var full = _connections.Count >= MaxConnections;
                var task = full ? RefuseBusyAsync(client) : ServeAsync(client);
                _connections.Add(task);
                _ = task.ContinueWith(t =>
                {
                    lock (_connections)
                    {
                        _connections.Remove(t);
                    }
                }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }
    }

    private async Task RefuseBusyAsync(Socket socket)
    {
        await using var connection = new AdminConnection(socket);
        await connection.FinishAsync(AdminExitCodes.Failed, $"the admin endpoint serves {MaxConnections} connections at once: try again", _stopping.Token).ConfigureAwait(false);
    }

    private async Task ServeAsync(Socket socket)
    {
        await Task.Yield(); // off the accept loop
        // One port, two protocols: a pbm request line is JSON ('{'), an HTTP request line starts with its method.
        var first = await PeekFirstByteAsync(socket).ConfigureAwait(false);
        if (first >= 0 && AdminHttp.IsHttp((byte)first))
        {
            await ServeHttpAsync(socket).ConfigureAwait(false);
            return;
        }

        await using var connection = new AdminConnection(socket);
        if (first == TimedOut)
        {
            LogBadRequest(_logger, connection.Peer, "no request within the timeout");
            await FinishQuietlyAsync(connection, $"no request line within {AdminProtocol.RequestTimeout.TotalSeconds:0} s").ConfigureAwait(false);
            return;
        }

        var peer = connection.Peer;
        try
        {
            var (request, problem) = await ReadRequestAsync(connection).ConfigureAwait(false);
            if (request is null)
            {
                if (problem is not null)
                {
                    LogBadRequest(_logger, peer, problem);
                    await connection.FinishAsync(AdminExitCodes.Usage, problem, _stopping.Token).ConfigureAwait(false);
                }

                return;
            }

            if (!TokenMatches(request.Token))
            {
                LogBadToken(_logger, peer, request.Palette ?? "", request.Command ?? "");
                await connection.FinishAsync(AdminExitCodes.Refused, "bad or missing admin token", _stopping.Token).ConfigureAwait(false);
                return;
            }

            await RunAsync(connection, request).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException || (ex is OperationCanceledException && (connection.Gone.IsCancellationRequested || _stopping.IsCancellationRequested)))
        {
            LogClientGone(_logger, peer, ex.Message); // a peer reset is normal
        }
    }

    private const int TimedOut = -2;

    /// <summary>The connection's first byte without consuming it; -1 when the client closed (or reset) first, <see cref="TimedOut"/> after the request timeout.</summary>
    private async Task<int> PeekFirstByteAsync(Socket socket)
    {
        var one = new byte[1];
        using var timeout = new CancellationTokenSource(AdminProtocol.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, _stopping.Token);
        try
        {
            var read = await socket.ReceiveAsync(one, SocketFlags.Peek, linked.Token).ConfigureAwait(false);
            return read == 1 ? one[0] : -1;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            return TimedOut;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            return -1;
        }
    }

    private async Task FinishQuietlyAsync(AdminConnection connection, string message)
    {
        try
        {
            await connection.FinishAsync(AdminExitCodes.Usage, message, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            LogClientGone(_logger, connection.Peer, ex.Message);
        }
    }

    /// <summary>One HTTP request (<see cref="AdminHttp"/>), then our FIN and a short linger so the client reads the answer before the close.</summary>
    private async Task ServeHttpAsync(Socket socket)
    {
        var peer = socket.RemoteEndPoint?.ToString() ?? "?";
        var stream = new NetworkStream(socket, ownsSocket: true);
        await using (stream.ConfigureAwait(false))
        {
            using var timeout = new CancellationTokenSource(AdminProtocol.RequestTimeout, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, _stopping.Token);
            try
            {
                await _http.ServeAsync(stream, peer, linked.Token, _stopping.Token).ConfigureAwait(false);
                socket.Shutdown(SocketShutdown.Send);
                using var linger = new CancellationTokenSource(TimeSpan.FromSeconds(1), _time);
                var sink = new byte[512];
                while (await stream.ReadAsync(sink, linger.Token).ConfigureAwait(false) > 0)
                {
                }
            }
            catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
            {
                LogClientGone(_logger, peer, ex.Message); // a peer reset is normal; a client that keeps its side open is closed after the linger
            }
        }
    }

    private async Task RunAsync(AdminConnection connection, AdminRequest request)
    {
        var palette = request.Palette ?? "";
        var command = request.Command ?? "";
        if (palette.Equals(AdminProtocol.HelpPalette, StringComparison.OrdinalIgnoreCase) || palette.Length == 0)
        {
            await connection.WriteAsync(HelpTable(), _stopping.Token).ConfigureAwait(false);
            await connection.FinishAsync(AdminExitCodes.Ok, null, _stopping.Token).ConfigureAwait(false);
            return;
        }

        if (!_palettes.TryGetValue(palette, out var found))
        {
            await connection.FinishAsync(AdminExitCodes.Usage,
                $"unknown palette '{palette}': this endpoint has {string.Join(", ", _palettes.Keys)} (pbm help lists their commands)", _stopping.Token).ConfigureAwait(false);
            return;
        }

        if (found.Commands.FirstOrDefault(c => c.Name.Equals(command, StringComparison.OrdinalIgnoreCase)) is not { } info)
        {
            var what = command.Length == 0 ? "no command" : $"unknown command '{found.Name} {command}'";
            await connection.FinishAsync(AdminExitCodes.Usage,
                $"{what}: {found.Name} has {string.Join(", ", found.Commands.Select(c => c.Name))}", _stopping.Token).ConfigureAwait(false);
            return;
        }

        LogCommand(_logger, connection.Peer, found.Name, info.Name, request.Args.Count);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token, connection.Gone);
        connection.WatchForClose();
        int exit;
        try
        {
            exit = await found.ExecuteAsync(request with { Palette = found.Name, Command = info.Name }, connection, cancel.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            exit = AdminExitCodes.Ok; // the client left, or the endpoint closes (below)
        }
        catch (Exception ex) when (ex is not (IOException or SocketException or ObjectDisposedException))
        {
            LogCommandFailed(_logger, ex, found.Name, info.Name);
            await connection.FinishAsync(AdminExitCodes.Failed, $"{found.Name} {info.Name} failed: {ex.Message}", _stopping.Token).ConfigureAwait(false);
            return;
        }

        if (connection.Gone.IsCancellationRequested)
        {
            return;
        }

        if (_stopping.IsCancellationRequested)
        {
            // A stream ended by the stop, not by the client: say so (pbm exits non-zero, "the node went away").
            await connection.FinishAsync(AdminExitCodes.Unreachable, "the node is shutting down: its admin endpoint closed", CancellationToken.None).ConfigureAwait(false);
            return;
        }

        await connection.FinishAsync(exit, null, _stopping.Token).ConfigureAwait(false);
    }

    private AdminFrame HelpTable()
    {
        var rows = new List<IReadOnlyList<string>>();
        foreach (var palette in _palettes.Values)
        {
            foreach (var command in palette.Commands)
            {
                rows.Add([palette.Name, command.Name, command.Arguments, command.Description]);
            }
        }

        return AdminFrame.Table("commands", ["palette", "command", "arguments", "description"], rows);
    }

    private bool TokenMatches(string? token)
    {
        if (_tokenHash is null)
        {
            return true;
        }

        // Hashes of equal length, compared in constant time: neither the token's bytes nor its length leak through timing.
        var given = SHA256.HashData(Encoding.UTF8.GetBytes(token ?? ""));
        return token is not null && CryptographicOperations.FixedTimeEquals(given, _tokenHash);
    }

    /// <summary>Reads the request line: (request, null), or (null, why it was refused), or (null, null) when the client closed first.</summary>
    private async Task<(AdminRequest? Request, string? Problem)> ReadRequestAsync(AdminConnection connection)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(AdminProtocol.MaxRequestBytes + 1);
        using var timeout = new CancellationTokenSource(AdminProtocol.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, _stopping.Token);
        try
        {
            var filled = 0;
            while (true)
            {
                int read;
                try
                {
                    // Sliced to the limit (+1 to tell "exactly at the limit" from "past it"): a line still open there is too long.
                    read = await connection.Stream.ReadAsync(buffer.AsMemory(filled, AdminProtocol.MaxRequestBytes + 1 - filled), linked.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (timeout.IsCancellationRequested)
                {
                    return (null, $"no request line within {AdminProtocol.RequestTimeout.TotalSeconds:0} s");
                }

                if (read == 0)
                {
                    return (null, filled == 0 ? null : "the request line ended without a newline");
                }

                var newline = Array.IndexOf(buffer, (byte)'\n', filled, read);
                filled += read;
                if (newline >= 0)
                {
                    var line = buffer.AsSpan(0, newline).TrimEnd((byte)'\r');
                    return AdminProtocol.DecodeRequest(line) is { } request
                        ? (request, null)
                        : (null, "the request line is not a JSON admin request ({\"palette\":..,\"command\":..,\"args\":[..]})");
                }

                if (filled > AdminProtocol.MaxRequestBytes)
                {
                    return (null, $"the request line is longer than {AdminProtocol.MaxRequestBytes} bytes");
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    [LoggerMessage(EventId = 9100, Level = LogLevel.Information, Message = "admin endpoint serving on {Endpoint} ({TokenMode}; palettes {Palettes})")]
    private static partial void LogListening(ILogger logger, IPEndPoint endpoint, string tokenMode, string palettes);

    [LoggerMessage(EventId = 9101, Level = LogLevel.Information, Message = "admin endpoint {Endpoint} closed")]
    private static partial void LogClosed(ILogger logger, IPEndPoint endpoint);

    [LoggerMessage(EventId = 9102, Level = LogLevel.Warning, Message = "admin request from {Peer} refused: bad or missing admin token ({Palette} {Command})")]
    private static partial void LogBadToken(ILogger logger, string peer, string palette, string command);

    [LoggerMessage(EventId = 9103, Level = LogLevel.Debug, Message = "admin request from {Peer} refused: {Problem}")]
    private static partial void LogBadRequest(ILogger logger, string peer, string problem);

    [LoggerMessage(EventId = 9104, Level = LogLevel.Information, Message = "admin command from {Peer}: {Palette} {Command} ({Args} args)")]
    private static partial void LogCommand(ILogger logger, string peer, string palette, string command, int args);

    [LoggerMessage(EventId = 9105, Level = LogLevel.Error, Message = "admin command {Palette} {Command} failed")]
    private static partial void LogCommandFailed(ILogger logger, Exception exception, string palette, string command);

    [LoggerMessage(EventId = 9106, Level = LogLevel.Debug, Message = "admin client {Peer} went away: {Detail}")]
    private static partial void LogClientGone(ILogger logger, string peer, string detail);

    [LoggerMessage(EventId = 9107, Level = LogLevel.Warning, Message = "admin endpoint close: {Count} connection(s) still open after 3 s")]
    private static partial void LogStopTimedOut(ILogger logger, int count);
}
