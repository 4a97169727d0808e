using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Akka.Actor;
using Akka.Hosting;
using Rama.Actors.Admin;
using Rama.Actors.Hosting;
using Rama.Actors.Listeners;
using Rama.Actors.Options;
using Rama.Actors.Upstreams;
using Rama.Admin.Admin;
using Rama.Admin.Cluster;
using Rama.Admin.Hosting;
using Rama.Admin.Logging;
using Rama.Admin.Options;
using Rama.Proxy.Upstream;

namespace Rama.Node;

public static class Program
{
    /// <summary>.NET's switch that runs socket completions on the epoll threads (one per core) instead of queueing them to the thread pool.</summary>
    internal const string InlineSocketCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    public static async Task<int> Main(string[] args)
    {
        // Before the first socket exists: a proxy's continuations are short and never block, so running them where
        // epoll reported the event saves a thread-pool hop and a context switch per receive (Kestrel's Linux transport
        // does the same). Measured in benchmarks/: CPU per tunnelled request 36 -> 21 us, context switches per proxied
        // request 1.9 -> 0.7. An operator's own setting (e.g. 0) wins.
        if (Environment.GetEnvironmentVariable(InlineSocketCompletions) is null)
        {
            Environment.SetEnvironmentVariable(InlineSocketCompletions, "1");
        }

        // Options: declared once (Rama.Actors.Options.NodeOptionDeclarations), merged from appsettings.json < --config
        // file < environment < command line, read and validated into NodeOptions. Exit 2 on any bad value.
        var commandLine = new NodeCommandLine();
        var startup = await RamaStartup.RunAsync(commandLine.CommandLine, args, Assembly.GetExecutingAssembly(), Console.Out, Console.Error).ConfigureAwait(false);
        if (startup.ExitCode is { } done)
        {
            return done;
        }

        var reader = new OptionsReader(startup.Configuration!, NodeOptionDeclarations.All);
        var options = NodeOptions.Read(reader);
        var telemetry = TelemetryOptions.Read(reader);
        if (startup.Parsed.Command == commandLine.CaExport)
        {
            return await ExportCaAsync(options, reader.Problems).ConfigureAwait(false);
        }

        if (await startup.FinishReadingAsync(reader, Console.Out, Console.Error).ConfigureAwait(false) is { } finished)
        {
            return finished;
        }

        FleetCertificates? certificates;
        try
        {
            certificates = ClusterHostingExtensions.CreateCertificates(options.Cluster);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            await Console.Error.WriteLineAsync("rama-node: cluster certificates: " + ex.Message).ConfigureAwait(false);
            return ExitCodes.BadOptions;
        }

        using var fleetCertificates = certificates;
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { ContentRootPath = AppContext.BaseDirectory, Args = [] });
        builder.Configuration.Sources.Clear();
        builder.Configuration.AddConfiguration(startup.Configuration!);
        builder.Logging.AddRamaConsole(); // the simple console format, single line, written in batches (Rama.Admin.Logging)
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.DrainTimeout + TimeSpan.FromSeconds(30));
        if (options.Listeners.Any(l => l.Routing is not null))
        {
            // Routed reverse listeners follow their configuration files: a changed file swaps the routes (ReverseRoutesReload).
            string[] files = startup.Parsed.ConfigFile is { } configFile
                ? [Path.Combine(AppContext.BaseDirectory, RamaConfiguration.AppSettingsFile), Path.GetFullPath(configFile)]
                : [Path.Combine(AppContext.BaseDirectory, RamaConfiguration.AppSettingsFile)];
            builder.Services.AddSingleton(services => new ReverseRoutesReload(files, () => RamaConfiguration.Build(AppContext.BaseDirectory, startup.Parsed),
                services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Node.Routes")));
        }

        ProxyDatabaseFile? database = null;
        // A fleet node routes through its replica of the fleet's proxy database; --proxydb there only seeds it (read once,
        // loaded through the sharded entities when the fleet's database is empty).
        var fleetDatabase = options.UsesFleetProxyDb ? new FleetProxyDatabase() : null;
        IReadOnlyList<UpstreamProxy>? fleetSeed = null;
        string? fleetData = null;
        if (fleetDatabase is not null)
        {
            try
            {
                fleetSeed = options.ProxyDb is null ? null : ProxyDatabaseLoader.LoadFile(options.ProxyDb);
                fleetData = options.FleetDataDirectory is null ? null : Directory.CreateDirectory(Path.GetFullPath(options.FleetDataDirectory)).FullName;
            }
            catch (ProxyDatabaseException ex)
            {
                await Console.Error.WriteLineAsync($"rama-node: {NodeOptionDeclarations.ProxyDb.Describe()}: {ex.Message}").ConfigureAwait(false);
                return ExitCodes.BadOptions;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"rama-node: {ex.Message}").ConfigureAwait(false);
                return ExitCodes.BadOptions;
            }

            builder.Services.AddRamaFleetProxyDbAdmin(fleetDatabase);
        }

        // A fleet proxy node counts its limits in the fleet's sharded entities and shares upstream health with the fleet.
        using var fleetLimits = options.UsesFleetProxyDb ? new FleetLimits(options.Proxy.Upstream) : null;
        if (fleetLimits is not null)
        {
            builder.Services.AddRamaFleetLimitsAdmin(fleetLimits, options.Proxy.Limits);
        }

        // The access log is its own Akka.Streams stream (batched writes, drops counted, never blocking a connection).
        builder.Services.AddRamaAccessLog(options.AccessLog);
        builder.Services.AddRamaClusterOptions(options.Cluster);
        // --otlp: traces of Rama.Proxy, metrics of Rama.Proxy and Rama.Fleet, by OTLP; without it no OpenTelemetry SDK at all.
        builder.Services.AddRamaTelemetry(telemetry, "rama-node", [Rama.Proxy.Observability.ProxyTracing.SourceName], ["Rama.Proxy", "Rama.Fleet"]);
        builder.Services.AddRamaAdmin(options.Admin);
        builder.Services.AddRamaNodeAdmin();
        builder.Services.AddRamaActorSystem(options.System, (akka, _) => akka
            .WithRamaCluster(options.System.Name, options.Cluster, certificates)
            .AddRamaAdmin()
            .AddRamaAccessLog()
            .WithRamaFleetProxyDbWhen(fleetDatabase, fleetData, fleetSeed, options.ProxyDb)
            .WithRamaFleetLimitsWhen(fleetLimits)
            .AddRama(new RamaSettings
            {
                DrainTimeout = options.DrainTimeout,
                Listeners = services => NodeListeners.Create(options, services, fleetDatabase?.Database ?? (IProxyDatabase?)database?.Database, fleetLimits),
            })
            // pbm fleet status|drain|roll: this node's member actor and the fleet's coordinator (a singleton on the proxy nodes).
            .AddRamaFleet(options.Cluster));

        using var host = builder.Build();
        var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Node");
        if (options.ProxyDb is not null && fleetDatabase is null)
        {
            try
            {
                database = ProxyDatabaseFile.Open(options.ProxyDb, host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Proxy.Upstream.ProxyDatabase"));
            }
            catch (Exception ex) when (ex is ProxyDatabaseException or IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"rama-node: {NodeOptionDeclarations.ProxyDb.Describe()}: {ex.Message}").ConfigureAwait(false);
                return ExitCodes.BadOptions;
            }
        }

        using var databaseLifetime = database;
        // Ctrl+C or SIGTERM before the node was ready: whatever the start (or the status ask after it) threw then is a
        // consequence of the stop the operator asked for, not a failure to report. Coordinated shutdown unbinds and
        // drains what did start; the node exits as after a drain.
        var stopping = host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        async Task<int> StoppedBeforeReadyAsync()
        {
            await host.WaitForShutdownAsync().ConfigureAwait(false);
            // The stop may be the fleet's, not the operator's: a member that could not prove it belongs exits 2 even
            // when that happens while the node is still starting (its listeners binding, the status ask).
            var (code, message) = MemberExit.Of(host.Services.GetRequiredService<ActorSystem>());
            logger.LogInformation("Rama node {Message} before it was ready", message);
            return code;
        }

        try
        {
            await host.StartAsync().ConfigureAwait(false);
        }
        catch (Exception) when (stopping.IsCancellationRequested)
        {
            return await StoppedBeforeReadyAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is ListenerBindException or AdminBindException)
        {
            await Console.Error.WriteLineAsync("rama-node: could not start: " + ex.Message).ConfigureAwait(false);
            return ExitCodes.BadOptions;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            // Building a stack reads files the options name (the MITM CA, created here when absent; CA bundles).
            await Console.Error.WriteLineAsync("rama-node: could not start: " + ex.Message).ConfigureAwait(false);
            return ExitCodes.BadOptions;
        }
        catch (Exception ex) when (ex is Akka.Remote.RemoteTransportException || ex.GetBaseException() is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.AddressAlreadyInUse or System.Net.Sockets.SocketError.AddressNotAvailable })
        {
            // Akka.Remote could not bind the cluster address (in use, not a local address).
            await Console.Error.WriteLineAsync($"rama-node: could not start: cluster address {options.Cluster.Bind}: {ex.GetBaseException().Message}").ConfigureAwait(false);
            return ExitCodes.BadOptions;
        }
        catch (Exception) when (MemberExit.StoppingWhileStarting(host.Services) is { } shuttingDown)
        {
            // The fleet stopped this member (a trust failure) while Akka.Hosting was still starting actors; the host may
            // not have been told to stop yet, so wait on the actor system, not on the host.
            var (stoppedCode, stoppedMessage) = await MemberExit.AfterTerminationAsync(shuttingDown, options.DrainTimeout + TimeSpan.FromSeconds(10)).ConfigureAwait(false);
            logger.LogInformation("Rama node {Message} before it was ready", stoppedMessage);
            return stoppedCode;
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or InvalidOperationException or TimeoutException or AskTimeoutException)
        {
            await Console.Error.WriteLineAsync("rama-node: could not start: " + ex.Message).ConfigureAwait(false);
            return ExitCodes.Failed;
        }

        ListenersStatus status;
        try
        {
            status = await host.Services.GetRequiredService<IRequiredActor<ProxyListeners>>().ActorRef
                .Ask<ListenersStatus>(GetListenerStatus.Instance, TimeSpan.FromSeconds(5)).WaitAsync(stopping).ConfigureAwait(false);
        }
        catch (Exception) when (stopping.IsCancellationRequested)
        {
            return await StoppedBeforeReadyAsync().ConfigureAwait(false);
        }

        foreach (var listener in options.Listeners)
        {
            var bound = status.Listeners.FirstOrDefault(l => l.Name == listener.Name)?.Endpoint ?? listener.Bind.ToString();
            Console.WriteLine($"Rama node: {listener.Name} listening on {bound} ({NodeListeners.Describe(options, listener)})");
        }

        if (options.Mitm.Enabled)
        {
            Console.WriteLine($"Rama node: MITM on; clients must trust {options.Mitm.CaCertificateFile} (rama-node ca export)");
        }

        if (options.Listeners.Any(l => l.Kind == ListenerKind.Proxy && l.Auth.Count == 0 && !System.Net.IPAddress.IsLoopback(l.Bind.Address)))
        {
            Console.WriteLine("Rama node: WARNING: open proxy on a non-loopback address (--allow-open-proxy)");
        }

        if (database is not null)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Rama node: proxy database {database.FilePath}: {database.Database.Count} records, version {database.Database.Version}, ") +
                $"mode {options.Proxy.Upstream.Mode.ToString().ToLowerInvariant()}");
        }

        if (fleetDatabase is not null)
        {
            var persistence = fleetData is null ? "in memory" : $"on disk in {fleetData}";
            var seeding = options.ProxyDb is null ? "" : $"; {options.ProxyDb} ({fleetSeed!.Count} records) seeds it when empty";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Rama node: fleet proxy database: {ProxyDbPartitions.Count} partitions, {persistence}{seeding}; ") +
                $"mode {options.Proxy.Upstream.Mode.ToString().ToLowerInvariant()}");
        }

        Console.WriteLine($"Rama node: admin endpoint {host.Services.GetRequiredService<AdminEndpoint>().BoundEndpoint} (pbm)");
        if (options.Cluster.Enabled)
        {
            var seeds = options.Cluster.Seeds.Count > 0 ? options.Cluster.Seeds : [options.Cluster.Advertised];
            Console.WriteLine($"Rama node: fleet member {options.Cluster.AddressOf(options.System.Name, options.Cluster.Advertised)} " +
                $"(roles {string.Join(",", options.Cluster.Roles)}; {Describe(options.Cluster.Authentication)}); seeds {string.Join(", ", seeds)}");
        }

        Console.WriteLine("Rama node ready; Ctrl+C or SIGTERM drains and stops it");
        await host.WaitForShutdownAsync().ConfigureAwait(false);
        var (code, message) = MemberExit.Of(host.Services.GetRequiredService<ActorSystem>());
        logger.LogInformation("Rama node {Message}", message);
        return code;
    }

    private static string Describe(FleetAuthentication authentication) => authentication switch
    {
        FleetAuthentication.Secret => "mutual TLS, fleet CA from the cluster secret",
        FleetAuthentication.Certificates => "mutual TLS, operator's CA",
        _ => "no TLS: loopback only",
    };

    /// <summary><c>rama-node ca export</c>: prints the MITM CA certificate (PEM), creating the CA when absent (the one command that may).</summary>
    private static async Task<int> ExportCaAsync(NodeOptions options, IReadOnlyList<string> problems)
    {
        // Only the MITM options matter here; a problem elsewhere (e.g. a listener) does not stop an export.
        var mitmProblems = problems.Where(p => p.StartsWith("Rama:Mitm", StringComparison.Ordinal)).ToList();
        if (mitmProblems.Count > 0)
        {
            foreach (var problem in mitmProblems)
            {
                await Console.Error.WriteLineAsync("rama-node: " + problem).ConfigureAwait(false);
            }

            return ExitCodes.BadOptions;
        }

        using var authority = options.Mitm.LoadAuthority();
        Console.Write(authority.ExportCertificatePem());
        return ExitCodes.Ok;
    }
}
