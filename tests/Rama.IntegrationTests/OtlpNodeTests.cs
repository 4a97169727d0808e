using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>
/// A real node started with <c>--otlp</c> sends the spans of the requests it proxies, and its metrics, to an OTLP/HTTP
/// collector (issue 15 item 2): here a local receiver that decodes the protobuf the exporter sends. curl is the client. A
/// lighthouse with <c>--otlp</c> sends the fleet's metrics.
/// </summary>
public sealed class OtlpNodeTests
{
    private const string ClientTraceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    private const string ClientSpanId = "00f067aa0ba902b7";

    [Fact]
    public async Task A_node_with_otlp_exports_the_span_of_each_proxied_request_with_its_attributes()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        var seen = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using var origin = TinyHttpOrigin.Start("traced", seen);
        await using var node = await NodeProcess.StartAsync(
            ["--listen", "127.0.0.1:0", "--reverse", $"127.0.0.1:0=127.0.0.1:{origin.Port}", "--otlp", receiver.Endpoint],
            // A short batch delay so the test waits a fraction of a second, not the default 5 s.
            new Dictionary<string, string> { ["Rama__Telemetry__TraceExportDelay"] = "0.2", ["Rama__Telemetry__MetricExportInterval"] = "0.5" });

        var forward = await Cli.CurlAsync("-x", $"http://{node.Endpoints[0]}", "-H", $"traceparent: 00-{ClientTraceId}-{ClientSpanId}-01",
            $"http://127.0.0.1:{origin.Port}/forwarded?q=1");
        Assert.Equal("traced", forward.Text);
        var reverse = await Cli.CurlAsync($"http://{node.Endpoints[1]}/reversed");
        Assert.Equal("traced", reverse.Text);
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal("traced", (await Cli.CurlAsync("-x", $"http://{node.Endpoints[0]}", $"http://127.0.0.1:{origin.Port}/counted")).Text);
        }

        await Eventually.TrueAsync(() => receiver.Spans.Count >= 2, TimeSpan.FromSeconds(20), "the node exported no spans: " + node.Tail());
        Assert.Empty(receiver.Errors);

        var span = Assert.Single(receiver.Spans, s => Equals(s["url.full"], $"http://127.0.0.1:{origin.Port}/forwarded?q=1"));
        Assert.Equal(("Rama.Proxy", "GET", OtlpSpan.Server), (span.Scope, span.Name, span.Kind));
        Assert.Equal((ClientTraceId, ClientSpanId), (span.TraceId, span.ParentSpanId)); // the client's trace continues
        Assert.Equal("GET", span["http.request.method"]);
        Assert.Equal(("127.0.0.1", (long)origin.Port), (span["server.address"], span["server.port"]));
        Assert.Equal(200L, span["http.response.status_code"]);
        Assert.Equal(("1.1", "127.0.0.1"), (span["network.protocol.version"], span["client.address"]));
        Assert.Equal(("forward", "listen-0"), (span["rama.kind"], span["rama.listener"]));
        Assert.IsType<string>(span["rama.fingerprint.ja4h"]);
        Assert.Equal("rama-node", span.Resource["service.name"]);

        var reversed = Assert.Single(receiver.Spans, s => Equals(s["url.path"], "/reversed"));
        Assert.Equal(("reverse", "reverse-0", 200L), (reversed["rama.kind"], reversed["rama.listener"], reversed["http.response.status_code"]));
        Assert.Equal("", reversed.ParentSpanId); // no traceparent from the client: a new trace

        // The origin saw Rama's spans as the parents of its requests, in the same traces.
        Assert.Contains(seen, head => head.Contains($"traceparent: 00-{ClientTraceId}-{span.SpanId}-01", StringComparison.OrdinalIgnoreCase));
        // A new trace: flags sampled (01), with the random-trace-id bit of Trace Context Level 2 (02) as OpenTelemetry sets it.
        Assert.Matches($"traceparent: 00-{reversed.TraceId}-{reversed.SpanId}-0[13]\r\n", Assert.Single(seen, head => head.StartsWith("GET /reversed ", StringComparison.Ordinal)));

        // The metrics of meter Rama.Proxy go by OTLP too (cumulative: the latest point of a series is its total): the three
        // forward requests and the one reverse request this test sent, counted and timed.
        OtlpPoint? Requests(string kind) => receiver.Latest("Rama.Proxy", "rama.proxy.requests", ("rama.proxy.kind", kind), ("rama.http.status_class", "2xx"));
        OtlpPoint? Durations(string kind) => receiver.Latest("Rama.Proxy", "http.server.request.duration", ("rama.proxy.kind", kind), ("http.response.status_code", 200L));
        await Eventually.TrueAsync(() => Requests("forward")?.Value == 3 && Requests("reverse")?.Value == 1 && Durations("forward")?.Value == 3,
            TimeSpan.FromSeconds(20), () => $"rama.proxy.requests forward {Requests("forward")}, reverse {Requests("reverse")}; "
                + $"duration {Durations("forward")}; metrics received: {string.Join(", ", receiver.Points.Select(p => p.Metric).Distinct())}");
        Assert.Equal(("sum", "1.1"), (Requests("forward")!.Type, Requests("forward")!["network.protocol.version"]));
        Assert.Equal("histogram", Durations("forward")!.Type);
        Assert.InRange(Durations("forward")!.Sum, 0, 60); // seconds, three short requests
        Assert.Empty(receiver.Errors);
    }

    [Fact]
    public async Task A_lighthouse_with_otlp_exports_the_fleet_meter_with_itself_as_the_one_up_member()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        var clusterPort = Rama.IntegrationTests.Fleet.FleetHarness.FreePort();
        await using var lighthouse = await NodeProcess.StartAsync(
            ["--cluster", $"127.0.0.1:{clusterPort}", "--cluster-secret", "rama-otlp-tests-secret-0001", "--otlp", receiver.Endpoint],
            new Dictionary<string, string> { ["Rama__Telemetry__MetricExportInterval"] = "0.5" },
            expectListening: false, project: "Rama.Lighthouse", assembly: "rama-lighthouse");

        // Meter Rama.Fleet (the lighthouse has no Rama.Proxy): it is up, alone in its fleet.
        OtlpPoint? SelfUp() => receiver.Latest("Rama.Fleet", "rama.cluster.self_up");
        OtlpPoint? UpMembers() => receiver.Latest("Rama.Fleet", "rama.cluster.members", ("rama.member.status", "up"));
        await Eventually.TrueAsync(() => SelfUp()?.Value == 1 && UpMembers()?.Value == 1, TimeSpan.FromSeconds(30),
            () => $"self_up {SelfUp()}, up members {UpMembers()}; metrics received: {string.Join(", ", receiver.Points.Select(p => $"{p.Scope}/{p.Metric}").Distinct())}; "
                + lighthouse.Tail());
        Assert.Equal("gauge", SelfUp()!.Type);
        Assert.DoesNotContain(receiver.Points, p => p.Scope == "Rama.Proxy");
        Assert.Empty(receiver.Errors);
    }

    [Fact]
    public async Task An_otlp_endpoint_that_is_not_an_http_url_is_refused_at_start()
    {
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--otlp", "collector:4318"], expectListening: false);
        var exitCode = await node.Exited.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(2, exitCode);
        Assert.Contains("--otlp", node.Output, StringComparison.Ordinal);
    }
}
