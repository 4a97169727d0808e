using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>
/// gRPC through the reverse proxy, HTTP/2 end to end: python grpcio (1.51, generic handlers, no codegen) as client and server,
/// the stack of a reverse listener (h2c with prior knowledge on its HTTP/1.1 port) in front of an h2c:// upstream. Unary, bidirectional streaming, error status in
/// trailers, cancellation passed on as RST_STREAM, deadlines.
/// </summary>
public class GrpcReverseProxyTests
{
    [Fact]
    public async Task Unary_call_goes_through()
    {
        await using var peer = await GrpcPeer.StartAsync();
        await using var proxy = H2ReverseHarness.Listener(peer.Upstream);
        var (code, output) = await GrpcPeer.ClientAsync(proxy.Port, "unary");
        Assert.True(code == 0, output);
        Assert.Equal("echo:hello", output.Trim());
        Assert.True(proxy.Server.AcceptedConnections >= 1);
    }

    [Fact]
    public async Task Bidirectional_stream_of_100_messages_each_way()
    {
        await using var peer = await GrpcPeer.StartAsync();
        await using var proxy = H2ReverseHarness.Listener(peer.Upstream);
        var (code, output) = await GrpcPeer.ClientAsync(proxy.Port, "bidi");
        Assert.True(code == 0, output);
        Assert.Equal("received 100", output.Trim());
    }

    [Fact]
    public async Task Server_error_status_reaches_the_client_in_trailers()
    {
        await using var peer = await GrpcPeer.StartAsync();
        await using var proxy = H2ReverseHarness.Listener(peer.Upstream);
        var (code, output) = await GrpcPeer.ClientAsync(proxy.Port, "error");
        Assert.True(code == 0, output);
        Assert.Equal("INVALID_ARGUMENT bad request: fail", output.Trim());
    }

    [Fact]
    public async Task Client_cancellation_mid_stream_cancels_the_server_handler()
    {
        await using var peer = await GrpcPeer.StartAsync();
        await using var proxy = H2ReverseHarness.Listener(peer.Upstream);
        var (code, output) = await GrpcPeer.ClientAsync(proxy.Port, "cancel");
        Assert.True(code == 0, output);
        Assert.Contains("client cancelled", output, StringComparison.Ordinal);
        await peer.WaitForLineAsync("CANCELLED Hang", TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Client_deadline_is_deadline_exceeded_and_cancels_the_server_handler()
    {
        await using var peer = await GrpcPeer.StartAsync();
        await using var proxy = H2ReverseHarness.Listener(peer.Upstream);
        var (code, output) = await GrpcPeer.ClientAsync(proxy.Port, "deadline");
        Assert.True(code == 0, output);
        Assert.StartsWith("DEADLINE_EXCEEDED", output.Trim(), StringComparison.Ordinal);
        await peer.WaitForLineAsync("CANCELLED Slow", TimeSpan.FromSeconds(10));
    }
}
