namespace Rama.IntegrationTests;

/// <summary>One open node and one node with auth (john:s3cret), shared by a test class, plus a Kestrel origin.</summary>
public sealed class ProxyNodesFixture : IAsyncLifetime
{
    internal NodeProcess Open { get; private set; } = null!;

    internal NodeProcess Authed { get; private set; } = null!;

    internal KestrelOrigin Origin { get; private set; } = null!;

    public string OpenProxy => $"127.0.0.1:{Open.Endpoint.Port}";

    public string AuthedProxy => $"127.0.0.1:{Authed.Endpoint.Port}";

    public async Task InitializeAsync()
    {
        Origin = await KestrelOrigin.StartAsync();
        var open = NodeProcess.StartAsync(["--listen", "127.0.0.1:0"]);
        var authed = NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--auth", "john:s3cret"]);
        Open = await open;
        Authed = await authed;
    }

    public async Task DisposeAsync()
    {
        await Open.DisposeAsync();
        await Authed.DisposeAsync();
        await Origin.DisposeAsync();
    }
}
