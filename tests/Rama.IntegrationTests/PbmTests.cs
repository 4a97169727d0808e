using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Rama.IntegrationTests;

/// <summary>The built pbm (Rama.Cmd/bin/.../pbm.dll) as a real process: usage, unreachable endpoints, exit codes.</summary>
public sealed class PbmTests
{
    private static async Task<(int Exit, string Output, string Error, TimeSpan Elapsed)> RunAsync(params string[] args)
    {
        var result = await Pbm.RunAsync(args);
        return (result.Exit, result.Output, result.Error, result.Elapsed);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [Fact]
    public async Task Nothing_listening_exits_3_within_5_s_with_one_clear_line()
    {
        var port = FreePort();

        var (exit, output, error, elapsed) = await RunAsync($"127.0.0.1:{port}", "cluster", "show");

        Assert.Equal(3, exit);
        Assert.Equal("", output);
        Assert.Equal($"pbm: cannot reach 127.0.0.1:{port}: connection refused (is a node or lighthouse running with its admin endpoint there? see --admin)", error.Trim());
        Assert.True(elapsed < TimeSpan.FromSeconds(5), $"took {elapsed}");
    }

    [Fact]
    public async Task An_endpoint_that_never_accepts_exits_3_after_the_3_s_connect_timeout()
    {
        // A listener that never accepts, its queue filled: the kernel drops further SYNs, so pbm's connect hangs.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(0);
        var endpoint = (IPEndPoint)listener.LocalEndPoint!;
        var fillers = new List<Socket>();
        try
        {
            while (fillers.Count < 16)
            {
                var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                fillers.Add(filler);
                using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
                try
                {
                    await filler.ConnectAsync(endpoint, wait.Token);
                }
                catch (OperationCanceledException)
                {
                    break; // the queue is full
                }
            }

            var (exit, _, error, elapsed) = await RunAsync($"127.0.0.1:{endpoint.Port}", "node", "status");

            Assert.Equal(3, exit);
            Assert.Contains($"cannot reach 127.0.0.1:{endpoint.Port}", error, StringComparison.Ordinal);
            Assert.True(elapsed < TimeSpan.FromSeconds(5), $"took {elapsed}");
        }
        finally
        {
            fillers.ForEach(f => f.Dispose());
        }
    }

    [Fact]
    public async Task Help_documents_the_exit_codes_and_exits_0_without_a_node()
    {
        var (exit, output, error, _) = await RunAsync($"127.0.0.1:{FreePort()}", "--help");

        Assert.Equal(0, exit);
        Assert.Contains("usage: pbm [host:port] <palette> <command>", output, StringComparison.Ordinal);
        foreach (var code in new[] { "0  ok", "1  the command failed", "2  usage", "3  the endpoint cannot be reached", "4  bad or missing admin token" })
        {
            Assert.Contains(code, output, StringComparison.Ordinal);
        }

        Assert.Contains("the palettes are listed when the endpoint answers", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("cluster")]
    [InlineData("")]
    [InlineData("127.0.0.1:99999", "cluster", "show")]
    [InlineData("cluster", "show", "--token")]
    public async Task Bad_usage_exits_2_with_one_line(params string[] args)
    {
        var (exit, _, error, _) = await RunAsync([.. args.Where(a => a.Length > 0)]);

        Assert.Equal(2, exit);
        Assert.Single(error.Trim().Split('\n'));
        Assert.StartsWith("pbm: ", error, StringComparison.Ordinal);
    }
}
