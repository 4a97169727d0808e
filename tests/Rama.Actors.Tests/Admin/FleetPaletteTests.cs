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

/// <summary><c>pbm fleet ...</c> on a node that runs alone: no coordinator is started, and the palette says why; a usage error is one anywhere.</summary>
public sealed class FleetPaletteTests
{
    [Theory]
    [InlineData("status", "", "runs alone", AdminExitCodes.Failed)]
    [InlineData("drain", "", "runs alone", AdminExitCodes.Failed)]
    [InlineData("roll", "cancel", "runs alone", AdminExitCodes.Failed)]
    [InlineData("status", "--json", "runs alone", AdminExitCodes.Failed)] // pbm --json appends the flag: no usage error
    [InlineData("roll", "cancel --json", "runs alone", AdminExitCodes.Failed)]
    [InlineData("roll", "now --json", "usage: fleet roll [cancel] (got 'now')", AdminExitCodes.Usage)]
    [InlineData("roll", "now", "usage: fleet roll [cancel] (got 'now')", AdminExitCodes.Usage)]
    [InlineData("drain", "all", "usage: fleet drain (got 'all')", AdminExitCodes.Usage)]
    [InlineData("restart", "", "unknown command 'fleet restart'", AdminExitCodes.Usage)]
    public async Task Fleet_commands_on_a_node_alone_fail_and_say_why(string command, string argument, string message, int exit)
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
            var frames = await NodePaletteTests.AskAsync(host.Services.GetRequiredService<AdminEndpoint>().BoundEndpoint!, "fleet", command,
                argument.Split(' ', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains(frames, f => f.Type == AdminFrameType.Error && f.Message!.Contains(message, StringComparison.Ordinal));
            Assert.Equal(exit, frames[^1].Exit);
        }
        finally
        {
            await host.StopAsync();
        }
    }
}
