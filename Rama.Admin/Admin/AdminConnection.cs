using System.Net.Sockets;

namespace Rama.Admin.Admin;

/// <summary>
/// One admin client: the socket's stream, the frames written to it in order, and <see cref="Gone"/>, cancelled when
/// the client closes its side (it never does before the "end" frame, except to stop a <c>tail</c>).
/// </summary>
internal sealed class AdminConnection : IAdminResponse, IAsyncDisposable
{
    /// <summary>How long a finished connection waits for the client to close first (so our close never resets unread frames).</summary>
    private static readonly TimeSpan LingerLimit = TimeSpan.FromSeconds(1);

    private readonly Socket _socket;
    private readonly SemaphoreSlim _write = new(1, 1);
    private readonly CancellationTokenSource _gone = new();
    private Task? _watch;

    public AdminConnection(Socket socket)
    {
        _socket = socket;
        Stream = new NetworkStream(socket, ownsSocket: true);
        Peer = socket.RemoteEndPoint?.ToString() ?? "?";
    }

    public NetworkStream Stream { get; }

    public string Peer { get; }

    /// <summary>Cancelled once the client closed (or reset) the connection.</summary>
    public CancellationToken Gone => _gone.Token;

    public async ValueTask WriteAsync(AdminFrame frame, CancellationToken cancellationToken = default)
    {
        var line = AdminProtocol.Encode(frame);
        await _write.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Stream.WriteAsync(line, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _write.Release();
        }
    }

    /// <summary>After the request line: reads (and ignores) until the client closes, then cancels <see cref="Gone"/>.</summary>
    public void WatchForClose() => _watch ??= WatchAsync();

    /// <summary>Writes an error frame (when <paramref name="message"/> is set) and the end frame, then closes our side.</summary>
    public async Task FinishAsync(int exit, string? message, CancellationToken cancellationToken)
    {
        if (message is not null)
        {
            await WriteAsync(AdminFrame.Error(message), cancellationToken).ConfigureAwait(false);
        }

        await WriteAsync(AdminFrame.End(exit), cancellationToken).ConfigureAwait(false);
        _socket.Shutdown(SocketShutdown.Send);
        // Let the client close first: closing with its unread bytes (e.g. the rest of a too-long request) would reset
        // the connection and could discard the frames just sent.
        WatchForClose();
        try
        {
            await _watch!.WaitAsync(LingerLimit, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            // A client that keeps the connection open gets closed anyway.
        }
    }

    private async Task WatchAsync()
    {
        var buffer = new byte[512];
        try
        {
            while (await Stream.ReadAsync(buffer).ConfigureAwait(false) > 0)
            {
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
        {
            // Reset or closed by us: gone either way.
        }

        await _gone.CancelAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await Stream.DisposeAsync().ConfigureAwait(false);
        if (_watch is not null)
        {
            await _watch.ConfigureAwait(false);
        }

        _gone.Dispose();
        _write.Dispose();
    }
}
