using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Rama.Testing;

/// <summary>A raw TCP origin on 127.0.0.1:0 running a handler per connection; counts connections.</summary>
internal sealed class RawOrigin : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly Func<Socket, Task> _handler;
    private readonly Task _loop;
    private readonly List<Task> _handlers = [];
    private int _accepted;

    public RawOrigin(Func<Socket, Task> handler)
    {
        _handler = handler;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(64);
        Port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
        _loop = AcceptAsync();
    }

    public int Port { get; }

    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>An origin that answers every connection with the bytes it received (echo).</summary>
    public static RawOrigin Echo() => new(async socket =>
    {
        var buffer = new byte[16 * 1024];
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer);
            if (n == 0)
            {
                socket.Shutdown(SocketShutdown.Send);
                return;
            }

            await socket.SendAsync(buffer.AsMemory(0, n));
        }
    });

    private async Task AcceptAsync()
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync();
            }
            catch (Exception)
            {
                return;
            }

            Interlocked.Increment(ref _accepted);
            lock (_handlers)
            {
                _handlers.Add(Task.Run(async () =>
                {
                    using (socket)
                    {
                        try
                        {
                            await _handler(socket);
                        }
                        catch (SocketException)
                        {
                        }
                    }
                }));
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Dispose();
        await _loop;
        Task[] handlers;
        lock (_handlers)
        {
            handlers = [.. _handlers];
        }

        await Task.WhenAny(Task.WhenAll(handlers), Task.Delay(5000));
    }
}

/// <summary>Free loopback ports and silent targets.</summary>
internal static class Ports
{
    /// <summary>A port that was bound and released: connecting to it is refused.</summary>
    public static int Refused()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}

/// <summary>Runs a real client process (curl) with a hard time limit.</summary>
internal static class Cli
{
    public sealed record Result(int ExitCode, byte[] Stdout, string Stderr)
    {
        public string Text => Encoding.UTF8.GetString(Stdout);
    }

    public static async Task<Result> RunAsync(string file, IEnumerable<string> args, TimeSpan? timeout = null, byte[]? stdin = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        // Never let a proxy variable from the environment redirect a test client.
        foreach (var variable in new[] { "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy" })
        {
            psi.Environment.Remove(variable);
        }

        using var process = Process.Start(psi)!;
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        var stdout = new MemoryStream();
        var copy = process.StandardOutput.BaseStream.CopyToAsync(stdout, cts.Token);
        var stderr = process.StandardError.ReadToEndAsync(cts.Token);
        if (stdin is not null)
        {
            await process.StandardInput.BaseStream.WriteAsync(stdin, cts.Token);
            process.StandardInput.Close();
        }

        try
        {
            await process.WaitForExitAsync(cts.Token);
            await copy;
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', psi.ArgumentList)} did not finish in time");
        }

        return new Result(process.ExitCode, stdout.ToArray(), await stderr);
    }

    public static Task<Result> CurlAsync(params string[] args) => RunAsync("curl", ["-sS", "--max-time", "20", .. args]);
}

/// <summary>Polls a condition until a deadline (never a bare sleep).</summary>
internal static class Eventually
{
    public static Task TrueAsync(Func<bool> condition, TimeSpan? within = null, string? because = null) =>
        TrueAsync(condition, within, () => because ?? "condition not met in time");

    /// <summary>The same, with the failure's message made when the wait fails (a log read then, not at the call).</summary>
    public static async Task TrueAsync(Func<bool> condition, TimeSpan? within, Func<string> because)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)((within ?? TimeSpan.FromSeconds(5)).TotalSeconds * Stopwatch.Frequency);
        while (!condition())
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                Assert.Fail(because());
            }

            await Task.Delay(20);
        }
    }

    /// <summary>The same for a condition that must ask (an actor, a socket) to be checked.</summary>
    public static Task TrueAsync(Func<Task<bool>> condition, TimeSpan? within = null, string? because = null) =>
        TrueAsync(condition, within, () => because ?? "condition not met in time");

    /// <summary>The same, with the failure's message made when the wait fails.</summary>
    public static async Task TrueAsync(Func<Task<bool>> condition, TimeSpan? within, Func<string> because)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)((within ?? TimeSpan.FromSeconds(5)).TotalSeconds * Stopwatch.Frequency);
        while (!await condition())
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                Assert.Fail(because());
            }

            await Task.Delay(20);
        }
    }
}

/// <summary>Socket reads as tests need them.</summary>
internal static class Sockets
{
    /// <summary>True when a connect to <paramref name="endpoint"/> is refused (or reset): nothing listens there any more.</summary>
    public static bool IsRefused(IPEndPoint endpoint)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Connect(endpoint);
            return false;
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset)
        {
            return true;
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes within 10 s; an early close throws.</summary>
    public static async Task<byte[]> ReceiveExactlyAsync(Socket socket, int count)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var buffer = new byte[count];
        var read = 0;
        while (read < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cts.Token);
            if (n == 0)
            {
                throw new IOException($"closed after {read} of {count} bytes");
            }

            read += n;
        }

        return buffer;
    }

    /// <summary>Reads once within 10 s; 0 means the peer closed, whether by FIN or by reset.</summary>
    public static async Task<int> ReceiveOrZeroAsync(Socket socket)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            return await socket.ReceiveAsync(new byte[4096], SocketFlags.None, cts.Token);
        }
        catch (SocketException)
        {
            return 0;
        }
    }
}

/// <summary>Two pipe ends as one duplex pipe (in-memory transports for relay tests).</summary>
internal sealed class TestDuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
{
    public PipeReader Input { get; } = input;

    public PipeWriter Output { get; } = output;
}
