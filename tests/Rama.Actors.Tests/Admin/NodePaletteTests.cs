using System.Net;
using System.Net.Sockets;
using System.Text;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Rama.Actors.Admin;
using Rama.Actors.Hosting;
using Rama.Actors.Listeners;
using Rama.Actors.Tests.Hosting;
using Rama.Admin.Admin;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Testing;

namespace Rama.Actors.Tests.Admin;

/// <summary><c>pbm node status</c> on a host with Rama's listeners: the admin endpoint answers, also while the listeners drain.</summary>
public sealed class NodePaletteTests
{
    /// <summary>One admin request over the wire, as pbm sends it; the frames up to the end frame.</summary>
    internal static async Task<List<AdminFrame>> AskAsync(IPEndPoint admin, string palette, string command, params string[] args)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(admin);
        await socket.SendAsync(AdminProtocol.Encode(new AdminRequest { Palette = palette, Command = command, Args = args }));
        using var stream = new NetworkStream(socket);
        using var reader = new StreamReader(stream);
        var frames = new List<AdminFrame>();
        while (await reader.ReadLineAsync() is { } line)
        {
            var frame = AdminProtocol.DecodeFrame(Encoding.UTF8.GetBytes(line))!;
            frames.Add(frame);
            if (frame.Type == AdminFrameType.End)
            {
                break;
            }
        }

        return frames;
    }

    private static string Draining(List<AdminFrame> frames) => frames.Single(f => f.Type == AdminFrameType.Fields).Fields!["draining"];

    [Fact]
    public async Task Node_status_lists_the_listeners_and_shows_draining_while_they_drain()
    {
        var gate = new TaskCompletionSource();
        var stack = Service.FromFunc<ConnectionContext, Unit>(async (_, ct) =>
        {
            await gate.Task.WaitAsync(ct);
            return Unit.Value;
        });
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddRamaAdmin(new AdminOptions { Bind = new IPEndPoint(IPAddress.Loopback, 0) }).AddRamaNodeAdmin();
        builder.Services.AddAkka("node", akka => akka
            .AddRamaAdmin()
            .AddRama(new RamaSettings
            {
                DrainTimeout = TimeSpan.FromSeconds(10),
                Listeners = _ => [new ListenerSpec("edge", new IPEndPoint(IPAddress.Loopback, 0), stack)],
            }));
        using var host = builder.Build();
        await host.StartAsync();
        var admin = host.Services.GetRequiredService<AdminEndpoint>().BoundEndpoint!;

        var status = await AskAsync(admin, "node", "status");
        var table = status.Single(f => f.Type == AdminFrameType.Table);
        Assert.Equal(["name", "endpoint", "bound", "draining", "open", "accepted"], table.Columns);
        var edge = Assert.Single(table.Rows!);
        Assert.Equal(["edge", "yes", "no"], [edge[0], edge[2], edge[3]]);
        Assert.Equal("no", Draining(status));
        Assert.Equal(0, status[^1].Exit);

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(IPEndPoint.Parse(edge[1]));
        var stopping = host.StopAsync(TimeSpan.FromSeconds(30).ToToken());

        // The listeners drain (service-requests-done) before the endpoint closes (before-actor-system-terminate).
        await Eventually.TrueAsync(async () => Draining(await AskAsync(admin, "node", "status")) == "yes", TimeSpan.FromSeconds(10), "node status never said draining");
        gate.SetResult();
        await stopping.WaitAsync(TimeSpan.FromSeconds(20));

        using var refused = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await Assert.ThrowsAsync<SocketException>(async () => await refused.ConnectAsync(admin));
    }
}
