using Xunit.Abstractions;
using System.Diagnostics;
using System.Security.Cryptography;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Http2;

/// <summary>Our HTTP/2 server driven by real clients: curl, nghttp, h2load (nghttp2's tools).</summary>
public class Http2RealPeerTests(ITestOutputHelper output)
{
    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var stdout = process.StandardOutput.ReadToEndAsync(cts.Token);
        var stderr = process.StandardError.ReadToEndAsync(cts.Token);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        return (process.ExitCode, await stdout, await stderr);
    }

    [Fact]
    public async Task Curl_prior_knowledge_gets_a_page_over_h2()
    {
        await using var server = Http2TestServices.StartServer();
        var (code, stdout, stderr) = await Curl.RunAsync("--http2-prior-knowledge", "-i", $"http://127.0.0.1:{server.LocalEndPoint.Port}/info?x=1");
        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/2 200", stdout, StringComparison.Ordinal);
        Assert.Contains("Http2 GET /info?x=1 http 127.0.0.1:", stdout, StringComparison.Ordinal);
        // curl (nghttp2) sends SETTINGS 3:100;4:10485760;2:0 (curl 7.88), WINDOW_UPDATE 1048510465, pseudo-headers m,p,s,a.
        Assert.Contains("|m,p,s,a", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Curl_posts_1_MiB_and_gets_the_same_bytes_echoed()
    {
        await using var server = Http2TestServices.StartServer();
        var file = Path.GetTempFileName();
        var output = Path.GetTempFileName();
        try
        {
            await File.WriteAllBytesAsync(file, Http2TestServices.Big);
            var (code, _, stderr) = await Curl.RunAsync("--http2-prior-knowledge", "--data-binary", "@" + file, "-o", output, $"http://127.0.0.1:{server.LocalEndPoint.Port}/echo");
            Assert.True(code == 0, stderr);
            Assert.Equal(SHA256.HashData(Http2TestServices.Big), SHA256.HashData(await File.ReadAllBytesAsync(output)));
        }
        finally
        {
            File.Delete(file);
            File.Delete(output);
        }

        await AssertNoOpenConnectionsAsync(server);
    }

    [Fact]
    public async Task Nghttp_runs_concurrent_streams_and_sees_trailers()
    {
        await using var server = Http2TestServices.StartServer();
        var url = $"http://127.0.0.1:{server.LocalEndPoint.Port}";
        var (code, stdout, stderr) = await RunAsync("nghttp", "-nv", "-m", "10", url + "/big", url + "/trailers");
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("grpc-status: 0", stdout, StringComparison.Ordinal);
        Assert.Contains("recv SETTINGS frame", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("GOAWAY", stdout.Replace("send GOAWAY frame <length=8, flags=0x00, stream_id=0>\n          (last_stream_id=0, error_code=NO_ERROR(0x00)", "", StringComparison.Ordinal), StringComparison.Ordinal);
        // 10 x /big and 10 x /trailers, each with END_STREAM on its last DATA or trailers.
        Assert.Equal(20, CountReceivedEndStreams(stdout));
        Assert.Equal(10, CountReceived(stdout, "recv (stream_id=", ") grpc-status: 0"));
    }

    /// <summary>nghttp -v prints each frame as "[ t] recv DATA frame &lt;...&gt;" followed by indented lines ("; END_STREAM").</summary>
    private static int CountReceivedEndStreams(string nghttpLog) =>
        nghttpLog.Split("\n[").Count(f => f.Contains("] recv ", StringComparison.Ordinal) && f.Contains("; END_STREAM", StringComparison.Ordinal));

    private static int CountReceived(string nghttpLog, string prefix, string suffix) =>
        nghttpLog.Split('\n').Count(l => l.Contains(prefix, StringComparison.Ordinal) && l.Contains(suffix, StringComparison.Ordinal));

    [Fact]
    public async Task H2load_2000_requests_on_4_connections_16_streams_all_succeed()
    {
        await using var server = Http2TestServices.StartServer();
        var (code, stdout, stderr) = await RunAsync("h2load", "-n", "2000", "-c", "4", "-m", "16", $"http://127.0.0.1:{server.LocalEndPoint.Port}/hello");
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored", stdout, StringComparison.Ordinal);
        Assert.Contains("status codes: 2000 2xx", stdout, StringComparison.Ordinal);
        output.WriteLine(string.Join('\n', stdout.Split('\n').Where(l => l.StartsWith("finished in", StringComparison.Ordinal))));
        await AssertNoOpenConnectionsAsync(server);
    }

    [Fact]
    public async Task H2load_posts_256_KiB_bodies_echoed_on_concurrent_streams()
    {
        // Flow control both ways under load: 200 uploads of 256 KiB echoed back, 2 connections x 10 streams.
        await using var server = Http2TestServices.StartServer();
        var file = Path.GetTempFileName();
        try
        {
            await File.WriteAllBytesAsync(file, Http2TestServices.Big[..(256 * 1024)]);
            var (code, stdout, stderr) = await RunAsync("h2load", "-n", "200", "-c", "2", "-m", "10", "-d", file, $"http://127.0.0.1:{server.LocalEndPoint.Port}/echo");
            Assert.True(code == 0, stderr + stdout);
            Assert.Contains("requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, 0 errored", stdout, StringComparison.Ordinal);
            Assert.Contains("status codes: 200 2xx", stdout, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }

        await AssertNoOpenConnectionsAsync(server);
    }

    [Fact]
    public async Task Nghttp_answers_the_drain_ping_gets_the_final_goaway_after_one_round_trip_and_its_stream_in_flight_finishes()
    {
        // RFC 9113 §6.8 with a real client: GOAWAY 2^31-1 and a PING; nghttp2 ACKs the PING, and the final GOAWAY (its
        // request's stream as the last) follows on the ACK: the server would wait 60 s for a client that does not answer.
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var application = Http2TestServices.Application(gate);
        await using var server = Http2TestServices.StartServer(Rama.Proxy.Core.Service.FromFunc<Rama.Proxy.Http.HttpRequest, Rama.Proxy.Http.HttpResponse>((request, ct) =>
        {
            started.TrySetResult();
            return application.ServeAsync(request, ct);
        }), new Rama.Proxy.Http.Http2.Http2Limits { DrainPingTimeout = TimeSpan.FromSeconds(60) });
        // nghttp's output line by line (stdbuf: line-buffered into the pipe), to see the final GOAWAY arrive while the stream
        // is still open: released earlier, the stream may end first, and nghttp then closes without waiting for it.
        var start = new ProcessStartInfo("stdbuf") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-oL", "nghttp", "-nv", $"http://127.0.0.1:{server.LocalEndPoint.Port}/slow" })
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        var lines = new System.Text.StringBuilder();
        var finalGoAway = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reading = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                lock (lines)
                {
                    lines.Append(line).Append('\n');
                    if (GoAways(lines.ToString()).Count == 2)
                    {
                        finalGoAway.TrySetResult();
                    }
                }
            }
        });
        var stderrText = process.StandardError.ReadToEndAsync();
        try
        {
            await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
            await server.UnbindAsync();
            await finalGoAway.Task.WaitAsync(TimeSpan.FromSeconds(10)); // the stream is still waiting for the gate
            gate.SetResult();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            await reading.WaitAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }

            output.WriteLine(lines.ToString());
        }

        var (code, stdout, stderr) = (process.ExitCode, lines.ToString(), await stderrText);
        Assert.True(code == 0, stderr + stdout);
        var stream = int.Parse(System.Text.RegularExpressions.Regex.Match(stdout, @"send HEADERS frame <[^>]*stream_id=(\d+)>").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Contains($"recv (stream_id={stream}) :status: 200", stdout, StringComparison.Ordinal);
        Assert.Matches($@"recv DATA frame <length=\d+, flags=0x01, stream_id={stream}>", stdout); // the body to its END_STREAM
        var goaways = GoAways(stdout);
        Assert.Equal([int.MaxValue, stream], goaways.Select(g => g.Last));
        Assert.Matches(@"send PING frame <length=8, flags=0x01", stdout); // nghttp2 ACKed the server's PING
        Assert.True(goaways[1].At - goaways[0].At < 30, $"the final GOAWAY came {goaways[1].At - goaways[0].At:F3} s after the first: the ACK was not used");
        Assert.True(await server.DrainAsync(TimeSpan.FromSeconds(10)));
    }

    // nghttp -v: "[  0.012] recv GOAWAY frame <length=8, flags=0x00, stream_id=0>" then "(last_stream_id=1, error_code=...".
    private static List<(double At, int Last)> GoAways(string verbose)
    {
        var found = new List<(double, int)>();
        var matches = System.Text.RegularExpressions.Regex.Matches(verbose, @"\[\s*(\d+\.\d+)\] recv GOAWAY frame[^\n]*\n\s*\(last_stream_id=(\d+)");
        foreach (System.Text.RegularExpressions.Match match in matches)
        {
            found.Add((double.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)));
        }

        return found;
    }

    private static async Task AssertNoOpenConnectionsAsync(Rama.Proxy.Net.TcpServer server)
    {
        await Eventually.TrueAsync(() => server.OpenConnections == 0, TimeSpan.FromSeconds(10), "connections stayed open");

        Assert.Equal(0, server.OpenConnections);
    }
}
