using System.Net;
using System.Net.Sockets;
using System.Text;
using BenchmarkDotNet.Attributes;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;

namespace Rama.Benchmarks;

/// <summary>
/// One keep-alive request/response (1 KiB body) through the in-process reverse proxy on loopback, as wrk
/// drives it in benchmarks/run scenario 2. The client and the origin are blocking sockets with fixed
/// buffers (they allocate nothing per request), so the Allocated column is the proxy's own cost per
/// request: the number the issue asks to drive toward zero.
/// </summary>
public class ReverseProxyBenchmarks
{
    private static readonly byte[] s_request = Encoding.ASCII.GetBytes("GET /1k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    private Socket _originListener = null!;
    private Thread _origin = null!;
    private TcpServer _server = null!;
    private IService<ConnectionContext, Unit> _proxy = null!;
    private Socket _client = null!;
    private readonly byte[] _response = new byte[64 * 1024];
    private int _responseLength;

    /// <summary>The epoll event loops (the default on Linux x86-64) and the portable sockets + pipes transport.</summary>
    [Params(ReverseProxyTransport.Epoll, ReverseProxyTransport.Sockets)]
    public ReverseProxyTransport Transport { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var body = new byte[1024];
        var head = Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 05:00:00 GMT\r\nContent-Type: application/octet-stream\r\n"
            + "Content-Length: 1024\r\nLast-Modified: Sun, 22 Nov 2026 04:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"6740-400\"\r\nAccept-Ranges: bytes\r\n\r\n");
        var answer = head.Concat(body).ToArray();
        _originListener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _originListener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _originListener.Listen(16);
        _origin = new Thread(() => ServeOrigin(answer)) { IsBackground = true, Name = "origin" };
        _origin.Start();

        var upstream = new HostPort("127.0.0.1", ((IPEndPoint)_originListener.LocalEndPoint!).Port);
        _proxy = ReverseProxyStack.Create(new ForwardProxyOptions { ReverseTransport = Transport }, upstream);
        _server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _server.Start(_proxy);
        _client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        _client.Connect(_server.LocalEndPoint);

        // Learn the proxied response's length once (Via added, hop-by-hop fields removed).
        _client.Send(s_request);
        _responseLength = ReadResponse();
    }

    private void ServeOrigin(byte[] answer)
    {
        var buffer = new byte[8192];
        while (true)
        {
            Socket connection;
            try
            {
                connection = _originListener.Accept();
            }
            catch (SocketException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }

            connection.NoDelay = true;
            var thread = new Thread(() =>
            {
                using (connection)
                {
                    try
                    {
                        // Requests arrive one at a time (one client, keep-alive): a head ends with CRLFCRLF in one receive.
                        while (connection.Receive(buffer) > 0)
                        {
                            connection.Send(answer);
                        }
                    }
                    catch (SocketException)
                    {
                    }
                }
            }) { IsBackground = true };
            thread.Start();
        }
    }

    // The first response teaches its length (head up to CRLFCRLF + Content-Length 1024).
    private int ReadResponse()
    {
        var total = 0;
        while (true)
        {
            total += _client.Receive(_response, total, _response.Length - total, SocketFlags.None);
            var end = _response.AsSpan(0, total).IndexOf("\r\n\r\n"u8);
            if (end >= 0 && total >= end + 4 + 1024)
            {
                return total;
            }
        }
    }

    [Benchmark(Description = "reverse proxy round trip, 1 KiB (keep-alive, loopback)")]
    public int RoundTrip()
    {
        _client.Send(s_request);
        var total = 0;
        while (total < _responseLength)
        {
            total += _client.Receive(_response, total, _responseLength - total, SocketFlags.None);
        }

        return total;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.Dispose();
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        ((IAsyncDisposable)_proxy).DisposeAsync().AsTask().GetAwaiter().GetResult();
        _originListener.Dispose();
    }
}
