using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Akka;
using Akka.Actor;
using Rama.Admin.Admin;

namespace Rama.Admin.Tests.Admin;

/// <summary>
/// HTTP on the admin endpoint's port (/healthz, /readyz, /metrics) beside pbm, with a real actor system and curl as the
/// HTTP client.
/// </summary>
public sealed class AdminHttpTests
{
    [Fact]
    public async Task Healthz_answers_200_and_pbm_still_works_on_the_same_port()
    {
        await using var host = await AdminTestHost.StartAsync();

        var health = await CurlAsync($"http://{host.Target}/healthz");
        var (exit, output, error) = await host.PbmAsync("cluster", "show");

        Assert.Equal(200, health.Status);
        Assert.Equal("ok\n", health.Body);
        Assert.True(exit == AdminExitCodes.Ok, error);
        Assert.Contains("count: 1", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Readyz_is_503_until_the_member_is_Up_then_200()
    {
        await using var host = await AdminTestHost.StartAsync(joinSelf: false);

        var before = await CurlAsync($"http://{host.Target}/readyz");
        host.Cluster.Join(host.Cluster.SelfAddress);
        await AdminTestHost.WaitAsync(() => host.Cluster.SelfMember.Status == Akka.Cluster.MemberStatus.Up, "the member never came Up");
        var after = await CurlAsync($"http://{host.Target}/readyz");

        Assert.Equal(503, before.Status);
        Assert.Contains("not Up", before.Body, StringComparison.Ordinal);
        Assert.Equal(200, after.Status);
        Assert.Equal("ready\n", after.Body);
    }

    [Fact]
    public async Task Readyz_turns_503_at_the_start_of_coordinated_shutdown_while_the_endpoint_still_answers()
    {
        await using var host = await AdminTestHost.StartAsync();
        var shutdown = CoordinatedShutdown.Get(host.System);
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // The drain's first phase waits here, as a node's listeners would still be bound and serving.
        shutdown.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "hold-for-test", async () =>
        {
            await hold.Task.WaitAsync(TimeSpan.FromSeconds(20));
            return Done.Instance;
        });
        Assert.Equal(200, (await CurlAsync($"http://{host.Target}/readyz")).Status);

        var running = shutdown.Run(CoordinatedShutdown.ClrExitReason.Instance);
        var during = await CurlAsync($"http://{host.Target}/readyz");
        var alive = await CurlAsync($"http://{host.Target}/healthz");
        hold.SetResult();
        await running.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(503, during.Status);
        Assert.StartsWith("not ready: draining", during.Body, StringComparison.Ordinal);
        Assert.Equal(200, alive.Status);
    }

    [Fact]
    public async Task Metrics_need_the_bearer_token_when_the_endpoint_has_one_and_the_probes_do_not()
    {
        const string token = "s3cret-admin-token";
        await using var host = await AdminTestHost.StartAsync(new AdminOptions { Bind = new IPEndPoint(IPAddress.Loopback, 0), Token = token });
        var url = $"http://{host.Target}";

        var none = await CurlAsync(url + "/metrics", "-D", "-");
        var wrong = await CurlAsync(url + "/metrics", "-H", "Authorization: Bearer nope");
        var right = await CurlAsync(url + "/metrics", "-H", $"Authorization: Bearer {token}", "-D", "-");
        var health = await CurlAsync(url + "/healthz");
        var ready = await CurlAsync(url + "/readyz");
        var pbm = await AdminTestHost.RunPbmAsync([host.Target, "--token", token, "cluster", "show"]);

        Assert.Equal(401, none.Status);
        Assert.Contains("WWW-Authenticate: Bearer realm=\"rama-admin\"", none.Body, StringComparison.Ordinal);
        Assert.Equal(401, wrong.Status);
        Assert.Equal(200, right.Status);
        Assert.Matches("Content-Type: text/plain[^\r]*version=0.0.4", right.Body);
        // Rama.Fleet's gauges of this actor system, in Prometheus names.
        Assert.Contains("rama_cluster_members{otel_scope_name=\"Rama.Fleet\",rama_member_status=\"up\"} 1", right.Body, StringComparison.Ordinal);
        Assert.Contains("rama_cluster_unreachable_members{otel_scope_name=\"Rama.Fleet\"} 0", right.Body, StringComparison.Ordinal);
        Assert.Contains("rama_actor_system_uptime_seconds_total", right.Body, StringComparison.Ordinal);
        Assert.Equal(200, health.Status);
        Assert.Equal(200, ready.Status);
        Assert.True(pbm.Exit == AdminExitCodes.Ok, pbm.Error);
    }

    [Theory]
    [InlineData("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed")]
    [InlineData("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404 Not Found")]
    [InlineData("GET /healthz HTTP/2.0\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported")]
    [InlineData("GET  /healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request")]
    [InlineData("GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", "HTTP/1.1 400 Bad Request")]
    [InlineData("GET /healthz?probe=1 HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK")]
    [InlineData("HEAD /healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK")]
    public async Task Bad_or_other_requests_get_a_clear_status_and_a_clean_close(string request, string statusLine)
    {
        await using var host = await AdminTestHost.StartAsync(cluster: false);

        var answer = await RawAsync(host.Admin, Encoding.ASCII.GetBytes(request));

        Assert.StartsWith(statusLine + "\r\n", answer, StringComparison.Ordinal);
        Assert.Contains("Connection: close", answer, StringComparison.Ordinal);
        if (request.StartsWith("HEAD", StringComparison.Ordinal))
        {
            Assert.EndsWith("\r\n\r\n", answer, StringComparison.Ordinal); // a HEAD answer has no body
        }
    }

    [Fact]
    public async Task A_head_past_8_KiB_is_431_and_closed()
    {
        await using var host = await AdminTestHost.StartAsync(cluster: false);

        var answer = await RawAsync(host.Admin, Encoding.ASCII.GetBytes("GET /healthz HTTP/1.1\r\nX-Big: " + new string('a', 9000) + "\r\n\r\n"));

        Assert.StartsWith("HTTP/1.1 431 ", answer, StringComparison.Ordinal);
    }

    /// <summary>curl with <c>-w %{http_code}</c>: (status, what it printed before it).</summary>
    private static async Task<(int Status, string Body)> CurlAsync(string url, params string[] extra)
    {
        var start = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in (string[])["-s", "--max-time", "10", "-w", "\n%{http_code}", .. extra, url])
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var output = await process.StandardOutput.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        var split = output.LastIndexOf('\n');
        return (int.Parse(output[(split + 1)..], System.Globalization.CultureInfo.InvariantCulture), output[..split]);
    }

    /// <summary>Sends <paramref name="request"/>, reads until the server closes (bounded).</summary>
    private static async Task<string> RawAsync(IPEndPoint endpoint, byte[] request)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await socket.ConnectAsync(endpoint, timeout.Token);
        await socket.SendAsync(request, timeout.Token);
        var received = new MemoryStream();
        var buffer = new byte[4096];
        int read;
        while ((read = await socket.ReceiveAsync(buffer, timeout.Token)) > 0)
        {
            received.Write(buffer, 0, read);
        }

        return Encoding.ASCII.GetString(received.ToArray());
    }
}
