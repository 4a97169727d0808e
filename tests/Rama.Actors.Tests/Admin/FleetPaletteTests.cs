using System.Net;
using System.Net.Sockets;
using System.Text;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Rama.Actors.Admin;
using Rama.Actors.Hosting;
using Rama.Actors.Listeners;
using Rama.Admin.Admin;
using Rama.Admin.Cluster;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Actors.Tests.Admin;

/// <summary><c>pbm fleet ...</c> on a node that runs alone: no coordinator is started, and the palette says why.</summary>
public sealed class FleetPaletteTests
{
    private static Task<List<AdminFrame>> AskAsync(IPEndPoint admin, string palette, string command) =>
        NodePaletteTests.AskAsync(admin, palette, command);

    [Theory]
    [InlineData("status")]
    [InlineData("drain")]
    public async Task Fleet_commands_on_a_node_alone_fail_with_exit_1_and_say_it_runs_alone(string command)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddRamaAdmin(new AdminOptions { Bind = new IPEndPoint(IPAddress.Loopback, 0) }).AddRamaNodeAdmin();
        builder.Services.AddAkka("alone", akka => akka
            .AddRamaAdmin()
            .AddRama(new RamaSettings
            {
                Listeners = _ => [new ListenerSpec("edge", new IPEndPoint(IPAddress.Loopback, 0), Service.FromFunc<ConnectionContext, Unit>((_, _) => ValueTask.FromResult(Unit.Value)))],
            })
            .AddRamaFleet(new ClusterOptions()));
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var frames = await AskAsync(host.Services.GetRequiredService<AdminEndpoint>().BoundEndpoint!, "fleet", command);
            Assert.Contains(frames, f => f.Type == AdminFrameType.Error && f.Message!.Contains("runs alone", StringComparison.Ordinal));
            Assert.Equal(AdminExitCodes.Failed, frames[^1].Exit);
        }
        finally
        {
            await host.StopAsync();
        }
    }
}
