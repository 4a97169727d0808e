using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Admin.Admin;

namespace Rama.Cmd;

/// <summary>The node could not be reached (refused, no answer, unknown host) or went away mid-answer.</summary>
internal sealed class AdminUnreachableException : Exception
{
    public AdminUnreachableException()
    {
    }

    public AdminUnreachableException(string message) : base(message)
    {
    }

    public AdminUnreachableException(string message, Exception innerException) : base(message, innerException)
    {
    }
}

/// <summary>One connection to an admin endpoint: send one request line, read the answer's frames until "end".</summary>
internal sealed class AdminClient : IAsyncDisposable
{
    /// <summary>How long a connect may take: 3 s.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(3);

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly StreamReader _reader;

    private AdminClient(Socket socket, string target)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new StreamReader(_stream, new UTF8Encoding(false), detectEncodingFromByteOrderMarks: false, bufferSize: 16 * 1024);
        Target = target;
    }

    /// <summary><c>host:port</c> as given.</summary>
    public string Target { get; }

    /// <summary>Connects to <paramref name="host"/>:<paramref name="port"/> within <see cref="ConnectTimeout"/>; throws <see cref="AdminUnreachableException"/>.</summary>
    public static async Task<AdminClient> ConnectAsync(string host, int port, CancellationToken cancellationToken)
    {
        var target = host.Contains(':', StringComparison.Ordinal) ? $"[{host}]:{port}" : $"{host}:{port}";
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(ConnectTimeout);
        IPAddress[] addresses;
        try
        {
            addresses = IPAddress.TryParse(host, out var ip) ? [ip] : await Dns.GetHostAddressesAsync(host, timeout.Token).ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            throw new AdminUnreachableException($"cannot reach {target}: {ex.Message}", ex);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new AdminUnreachableException($"cannot reach {target}: the name {host} did not resolve within {ConnectTimeout.TotalSeconds:0} s", ex);
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(addresses, port, timeout.Token).ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            var why = ex.SocketErrorCode switch
            {
                SocketError.ConnectionRefused => "connection refused (is a node or lighthouse running with its admin endpoint there? see --admin)",
                SocketError.HostUnreachable or SocketError.NetworkUnreachable => "no route to the host",
                _ => ex.Message,
            };
            throw new AdminUnreachableException($"cannot reach {target}: {why}", ex);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            throw new AdminUnreachableException($"cannot reach {target}: no answer within {ConnectTimeout.TotalSeconds:0} s", ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new AdminClient(socket, target);
    }

    public async Task SendAsync(AdminRequest request, CancellationToken cancellationToken)
    {
        try
        {
            await _stream.WriteAsync(AdminProtocol.Encode(request), cancellationToken).ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            throw new AdminUnreachableException($"{Target} closed the connection: {ex.Message}", ex);
        }
    }

    /// <summary>The next frame; null when the node closed the connection. A line that is not a frame throws <see cref="InvalidDataException"/>.</summary>
    public async Task<AdminFrame?> ReadAsync(CancellationToken cancellationToken)
    {
        string? line;
        try
        {
            line = await _reader.ReadLineAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            throw new AdminUnreachableException($"{Target} closed the connection: {ex.Message}", ex);
        }

        if (line is null)
        {
            return null;
        }

        return AdminProtocol.DecodeFrame(Encoding.UTF8.GetBytes(line))
               ?? throw new InvalidDataException($"{Target} answered something that is not an admin frame (is it an admin endpoint?): {Shorten(line)}");
    }

    private static string Shorten(string line) => line.Length <= 80 ? line : line[..80] + "...";

    public async ValueTask DisposeAsync()
    {
        _reader.Dispose();
        await _stream.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
    }
}
