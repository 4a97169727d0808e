using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Rama.Admin.Admin;
using Rama.Cmd;
using AkkaCluster = Akka.Cluster.Cluster;

namespace Rama.Admin.Tests.Admin;

/// <summary>
/// An in-process host: an actor system (with Akka.Cluster on 127.0.0.1 port 0 unless <c>cluster: false</c>) and, unless
/// <c>admin: false</c>, the admin endpoint on 127.0.0.1 port 0.
/// </summary>
internal sealed class AdminTestHost : IAsyncDisposable
{
    private readonly IHost _host;

    private AdminTestHost(IHost host) => _host = host;

    public ActorSystem System => _host.Services.GetRequiredService<ActorSystem>();

    public AkkaCluster Cluster => AkkaCluster.Get(System);

    public IPEndPoint Admin => _host.Services.GetRequiredService<AdminEndpoint>().BoundEndpoint!;

    public string Target => $"127.0.0.1:{Admin.Port}";

    public IServiceProvider Services => _host.Services;

    public static async Task<AdminTestHost> StartAsync(AdminOptions? options = null, bool cluster = true, bool admin = true,
        Action<IServiceCollection>? services = null, bool joinSelf = true)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        if (admin)
        {
            builder.Services.AddRamaAdmin(options ?? new AdminOptions { Bind = new IPEndPoint(IPAddress.Loopback, 0) });
        }

        services?.Invoke(builder.Services);
        builder.Services.AddAkka("rama", (akka, _) =>
        {
            akka.AddHocon("akka.loglevel = WARNING\nakka.coordinated-shutdown.run-by-clr-shutdown-hook = off", HoconAddMode.Prepend);
            if (cluster)
            {
                akka.WithRemoting("127.0.0.1", 0).WithClustering(new ClusterOptions());
            }

            akka.AddRamaAdmin();
        });
        var host = builder.Build();
        try
        {
            await host.StartAsync();
        }
        catch
        {
            host.Dispose();
            throw;
        }

        var started = new AdminTestHost(host);
        if (cluster && joinSelf)
        {
            started.Cluster.Join(started.Cluster.SelfAddress);
            await WaitAsync(() => started.Cluster.SelfMember.Status == Akka.Cluster.MemberStatus.Up, "the first member never came Up");
        }

        return started;
    }

    /// <summary>Runs pbm's command in-process against this host: (exit, stdout, stderr).</summary>
    public Task<(int Exit, string Output, string Error)> PbmAsync(params string[] args) => RunPbmAsync([Target, .. args]);

    public static async Task<(int Exit, string Output, string Error)> RunPbmAsync(string[] args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var exit = await new PbmCommand(output, error, name => environment?.GetValueOrDefault(name)).RunAsync(args, timeout.Token);
        return (exit, output.ToString(), error.ToString());
    }

    public static async Task WaitAsync(Func<bool> condition, string because, TimeSpan? within = null)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)((within ?? TimeSpan.FromSeconds(15)).TotalSeconds * Stopwatch.Frequency);
        while (!condition())
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                Assert.Fail(because);
            }

            await Task.Delay(20);
        }
    }

    public async Task StopAsync() => await _host.StopAsync();

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            await _host.StopAsync(timeout.Token);
        }
        finally
        {
            _host.Dispose();
        }
    }
}

/// <summary>A writer whose lines can be read while another task writes them (pbm's tail output).</summary>
internal sealed class LineWriter : TextWriter
{
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly StringBuilder _current = new();

    public override Encoding Encoding => Encoding.UTF8;

    public IReadOnlyList<string> Lines => [.. _lines];

    public override void Write(char value)
    {
        lock (_current)
        {
            if (value == '\n')
            {
                _lines.Enqueue(_current.ToString());
                _current.Clear();
            }
            else if (value != '\r')
            {
                _current.Append(value);
            }
        }
    }
}
