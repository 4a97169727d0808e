using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>
/// gRPC through the real node: <c>--reverse 127.0.0.1:0=h2c://…</c> in front of a python grpcio server, a python grpcio client
/// speaking h2c with prior knowledge to the node's reverse port (the port that also serves HTTP/1.1).
/// </summary>
public sealed class GrpcNodeTests
{
    [Fact]
    public async Task Grpc_calls_pass_the_node_reverse_port_to_an_h2c_upstream()
    {
        await using var peer = await GrpcPeer.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--reverse", $"127.0.0.1:0=h2c://{peer.Upstream.Target}"]);
        var port = node.Endpoints[0].Port;

        var unary = await GrpcPeer.ClientAsync(port, "unary");
        Assert.True(unary.Code == 0, unary.Output);
        Assert.Equal("echo:hello", unary.Output.Trim());

        var bidi = await GrpcPeer.ClientAsync(port, "bidi");
        Assert.True(bidi.Code == 0, bidi.Output);
        Assert.Equal("received 100", bidi.Output.Trim());

        var error = await GrpcPeer.ClientAsync(port, "error");
        Assert.True(error.Code == 0, error.Output);
        Assert.Equal("INVALID_ARGUMENT bad request: fail", error.Output.Trim());

        // The client's cancellation reaches the upstream's handler as a reset stream.
        var cancel = await GrpcPeer.ClientAsync(port, "cancel");
        Assert.True(cancel.Code == 0, cancel.Output);
        await peer.WaitForLineAsync("CANCELLED Hang", TimeSpan.FromSeconds(10));
    }
}
