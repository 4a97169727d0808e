using System.Diagnostics;
using System.Net;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>
/// haproxy as an HTTP/2 origin (<c>bind ... proto h2</c>, h2c with prior knowledge; it answers each request itself with what it
/// saw): curl speaks HTTP/1.1 to the reverse listener, which speaks h2 to haproxy by the upstream's <c>h2c://</c> scheme.
/// </summary>
public class HaproxyH2OriginTests
{
    [Fact]
    public async Task Haproxy_serves_h2c_requests_the_reverse_proxy_multiplexes()
    {
        var port = Ports.Refused();
        var config = Path.Combine(Path.GetTempPath(), $"rama-haproxy-h2-{Guid.NewGuid():N}.cfg");
        await File.WriteAllTextAsync(config, $$"""
            global
              maxconn 200
            defaults
              mode http
              timeout connect 5s
              timeout client 120s
              timeout server 120s
            frontend h2
              bind 127.0.0.1:{{port}} proto h2
              http-request return status 200 content-type text/plain lf-string "haproxy %[req.ver] %[method] %[path] host=%[req.hdr(host)] via=%[req.hdr(via)]\n"

            """); // haproxy refuses a last line without its LF
        // Its output is drained as it comes: reading it to the end would wait for haproxy to exit.
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var haproxy = new Process { StartInfo = new ProcessStartInfo("haproxy", ["-f", config, "-db"]) { RedirectStandardError = true, RedirectStandardOutput = true } };
        haproxy.OutputDataReceived += (_, e) => output.Enqueue(e.Data ?? "");
        haproxy.ErrorDataReceived += (_, e) => output.Enqueue(e.Data ?? "");
        haproxy.Start();
        haproxy.BeginOutputReadLine();
        haproxy.BeginErrorReadLine();
        try
        {
            await Eventually.TrueAsync(() => haproxy.HasExited || !Sockets.IsRefused(new IPEndPoint(IPAddress.Loopback, port)), TimeSpan.FromSeconds(10), "haproxy did not listen");
            Assert.False(haproxy.HasExited, "haproxy exited: " + string.Join('\n', output));
            var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", port)));
            await using var disposeOnFailure = proxy;

            // Five requests on one client connection, and twenty clients at once: every answer from haproxy over HTTP/2.
            var urls = Enumerable.Range(0, 5).Select(i => proxy.Url($"/one/{i}")).ToArray();
            var sequential = await Cli.CurlAsync(urls);
            Assert.True(sequential.ExitCode == 0, sequential.Stderr);
            var lines = sequential.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(5, lines.Length);
            for (var i = 0; i < 5; i++)
            {
                Assert.StartsWith($"haproxy 2.0 GET /one/{i} host=127.0.0.1:{proxy.Port} via=1.1 rama", lines[i], StringComparison.Ordinal);
            }

            var parallel = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Cli.CurlAsync(proxy.Url($"/many/{i}"))));
            for (var i = 0; i < 20; i++)
            {
                Assert.True(parallel[i].ExitCode == 0, parallel[i].Stderr);
                Assert.StartsWith($"haproxy 2.0 GET /many/{i} ", parallel[i].Text, StringComparison.Ordinal);
            }

            // haproxy keeps its h2 connections open (client timeout 120 s): disposing the listener's stack closes them at once
            // (GOAWAY, then the socket), and the dispose does not wait on haproxy.
            Assert.NotEqual(0, await EstablishedToAsync(port));
            var disposing = Stopwatch.StartNew();
            await proxy.DisposeAsync();
            Assert.True(disposing.Elapsed < TimeSpan.FromSeconds(5), $"dispose took {disposing.Elapsed}");
            Assert.Equal(0, await EstablishedToAsync(port));
        }
        finally
        {
            haproxy.Kill();
            await haproxy.WaitForExitAsync();
            File.Delete(config);
        }
    }

    // Established TCP connections to 127.0.0.1:port, as the kernel sees them (ss).
    private static async Task<int> EstablishedToAsync(int port)
    {
        var ss = await Cli.RunAsync("ss", ["-Htn", "state", "established", $"( dport = :{port} )"]);
        Assert.True(ss.ExitCode == 0, ss.Stderr);
        return ss.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
    }
}
