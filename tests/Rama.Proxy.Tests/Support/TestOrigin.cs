using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Rama.Proxy.Tests.Support;

/// <summary>A request as the origin saw it: the raw head lines, a hash of the body and the raw lines of a chunked body's trailer section.</summary>
public sealed record OriginRequest(int ConnectionNumber, string RequestLine, IReadOnlyList<string> HeaderLines, long BodyLength, string BodySha256,
    IReadOnlyList<string>? TrailerLines = null)
{
    public string? Header(string name) =>
        HeaderLines.Where(l => l.StartsWith(name + ":", StringComparison.OrdinalIgnoreCase)).Select(l => l[(name.Length + 1)..].Trim()).FirstOrDefault();
}

/// <summary>What the origin answers: raw bytes written after the request was read (null closes the connection).</summary>
public delegate byte[]? OriginHandler(OriginRequest request);

/// <summary>
/// A small HTTP/1.1 origin on 127.0.0.1:0 written on raw sockets, so that tests see the exact bytes
/// the proxy sent (header order and case) and control the exact bytes it answers.
/// </summary>
public sealed class TestOrigin : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly OriginHandler _handler;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentBag<TcpClient> _clients = [];
    private readonly Task _accepting;
    private int _connections;
    private int _open;
    private int _disposed;

    public TestOrigin(OriginHandler? handler = null)
    {
        _handler = handler ?? DefaultHandler;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptAsync();
    }

    public int Port { get; }

    public string Url(string path) => $"http://127.0.0.1:{Port}{path}";

    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Connections accepted and not yet ended (the peer closed, or the origin did).</summary>
    public int OpenConnections => Volatile.Read(ref _open);

    public ConcurrentQueue<OriginRequest> Requests { get; } = new();

    public static byte[] Response(int status, string body, params string[] headers)
    {
        var head = new StringBuilder($"HTTP/1.1 {status} X\r\n");
        foreach (var h in headers)
        {
            head.Append(h).Append("\r\n");
        }

        head.Append($"Content-Length: {Encoding.UTF8.GetByteCount(body)}\r\n\r\n");
        return Encoding.UTF8.GetBytes(head + body);
    }

    public static byte[] Chunked(params string[] chunks)
    {
        var text = new StringBuilder("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        foreach (var c in chunks)
        {
            text.Append($"{Encoding.UTF8.GetByteCount(c):x}\r\n{c}\r\n");
        }

        text.Append("0\r\n\r\n");
        return Encoding.UTF8.GetBytes(text.ToString());
    }

    /// <summary>/hello, /chunked, /hash (answers the body's SHA-256), /headers (echoes the raw header lines).</summary>
    public static byte[]? DefaultHandler(OriginRequest request)
    {
        var path = request.RequestLine.Split(' ')[1];
        return path switch
        {
            "/chunked" => Chunked("first;", "second;", new string('x', 10000)),
            "/hash" => Response(200, request.BodySha256),
            "/headers" => Response(200, string.Join("\n", request.HeaderLines)),
            _ when request.RequestLine.StartsWith("HEAD ", StringComparison.Ordinal) => Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Head: yes\r\n\r\n"),
            _ => Response(200, "hello"),
        };
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception)
            {
                return;
            }

            _clients.Add(client);
            var number = Interlocked.Increment(ref _connections);
            Interlocked.Increment(ref _open);
            _ = ServeCountedAsync(client, number);
        }
    }

    private async Task ServeCountedAsync(TcpClient client, int number)
    {
        try
        {
            await ServeAsync(client, number);
        }
        finally
        {
            Interlocked.Decrement(ref _open);
        }
    }

    private async Task ServeAsync(TcpClient client, int number)
    {
        try
        {
            using (client)
            {
                var stream = client.GetStream();
                var reader = new ByteReader(stream);
                while (true)
                {
                    var requestLine = await reader.ReadLineAsync(_stop.Token);
                    if (requestLine is null)
                    {
                        return;
                    }

                    var lines = new List<string>();
                    while (await reader.ReadLineAsync(_stop.Token) is { Length: > 0 } line)
                    {
                        lines.Add(line);
                    }

                    var request = new OriginRequest(number, requestLine, lines, 0, "");
                    using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                    long length = 0;
                    var trailers = new List<string>();
                    if (request.Header("Content-Length") is { } cl)
                    {
                        length = long.Parse(cl, System.Globalization.CultureInfo.InvariantCulture);
                        await reader.ReadExactlyAsync(length, sha, _stop.Token);
                    }
                    else if (request.Header("Transfer-Encoding") is not null)
                    {
                        while (true)
                        {
                            var size = Convert.ToInt64((await reader.ReadLineAsync(_stop.Token))!.Split(';')[0], 16);
                            if (size == 0)
                            {
                                while (await reader.ReadLineAsync(_stop.Token) is { Length: > 0 } trailer)
                                {
                                    trailers.Add(trailer);
                                }

                                break;
                            }

                            await reader.ReadExactlyAsync(size, sha, _stop.Token);
                            length += size;
                            await reader.ReadLineAsync(_stop.Token);
                        }
                    }

                    request = request with { BodyLength = length, BodySha256 = Convert.ToHexString(sha.GetHashAndReset()), TrailerLines = trailers };
                    Requests.Enqueue(request);
                    var answer = _handler(request);
                    if (answer is null)
                    {
                        return;
                    }

                    await stream.WriteAsync(answer, _stop.Token);
                    if (request.Header("Connection") == "close")
                    {
                        return;
                    }
                }
            }
        }
        catch (Exception) when (_stop.IsCancellationRequested)
        {
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Closes every accepted connection (FIN), as an origin's idle timeout would.</summary>
    public Task DropConnectionsAsync()
    {
        foreach (var c in _clients)
        {
            c.Client.Shutdown(SocketShutdown.Both);
            c.Dispose();
        }

        return Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync();
        _listener.Stop();
        foreach (var c in _clients)
        {
            c.Dispose();
        }

        await _accepting;
        _stop.Dispose();
    }

    /// <summary>Buffered reads of CRLF lines and exact byte counts from a stream.</summary>
    public sealed class ByteReader(Stream stream)
    {
        private readonly byte[] _buffer = new byte[64 * 1024];
        private int _start;
        private int _end;

        public async Task<string?> ReadLineAsync(CancellationToken cancellationToken)
        {
            var line = new List<byte>();
            while (true)
            {
                if (_start == _end && !await FillAsync(cancellationToken))
                {
                    return line.Count == 0 ? null : Encoding.Latin1.GetString([.. line]);
                }

                var b = _buffer[_start++];
                if (b == '\n')
                {
                    if (line.Count > 0 && line[^1] == '\r')
                    {
                        line.RemoveAt(line.Count - 1);
                    }

                    return Encoding.Latin1.GetString([.. line]);
                }

                line.Add(b);
            }
        }

        public async Task ReadExactlyAsync(long count, IncrementalHash? sha, CancellationToken cancellationToken)
        {
            while (count > 0)
            {
                if (_start == _end && !await FillAsync(cancellationToken))
                {
                    throw new EndOfStreamException();
                }

                var take = (int)Math.Min(count, _end - _start);
                sha?.AppendData(_buffer, _start, take);
                _start += take;
                count -= take;
            }
        }

        /// <summary>Reads everything until the peer closes.</summary>
        public async Task<byte[]> ReadToEndAsync(CancellationToken cancellationToken)
        {
            var all = new MemoryStream();
            all.Write(_buffer, _start, _end - _start);
            _start = _end;
            await stream.CopyToAsync(all, cancellationToken);
            return all.ToArray();
        }

        private async Task<bool> FillAsync(CancellationToken cancellationToken)
        {
            _start = 0;
            _end = await stream.ReadAsync(_buffer, cancellationToken);
            return _end > 0;
        }
    }
}
