using System.CommandLine;
using System.CommandLine.Help;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Akka.Actor;
using Akka.Hosting;
using Rama.Actors.Hosting;
using Rama.Actors.Listeners;
using Rama.Proxy.Stacks;
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

        var listen = new Option<string[]>("--listen") { Description = "Endpoint for HTTP proxy + SOCKS5 (ip:port, repeatable; default 127.0.0.1:8080; port 0 picks one)", Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = false };
        var auth = new Option<string[]>("--auth") { Description = "Proxy user as user:password (repeatable); without it the proxy is open (loopback only)", Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = false };
        var drain = new Option<double?>("--drain-timeout") { Description = "Seconds shutdown waits for connections in flight (default 20)" };
        var config = new Option<FileInfo?>("--config") { Description = "Extra JSON configuration file (same shape as appsettings.json)" };
        var reverse = new Option<string[]>("--reverse") { Description = "Reverse-proxy listener as ip:port=upstream-host:port (repeatable): HTTP/1.1, every request forwarded to the upstream, no proxy auth", Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = false };
        var allowOpen = new Option<bool>("--allow-open-proxy") { Description = "Allow a non-loopback endpoint without --auth" };
        var proxyDb = new Option<string?>("--proxydb") { Description = "Proxy database (CSV in rama's column order, or JSON) of upstream proxies; reloaded when the file changes" };
        var upstreamMode = new Option<string?>("--upstream-mode") { Description = "Requests without a filter: direct (default), required (407 / SOCKS5 0x02), fallback (use --upstream-fallback)" };
        var upstreamFallback = new Option<string?>("--upstream-fallback") { Description = "Filter for requests without one, as username labels (e.g. country-us-residential); implies --upstream-mode fallback" };
        var upstreamAttempts = new Option<int?>("--upstream-attempts") { Description = "Upstreams tried per connection before failing (default 3)" };
        var upstreamBackoff = new Option<double?>("--upstream-backoff") { Description = "Seconds a failing upstream is backed off at first; doubles per failure up to 300 (default 5)" };
        var upstreamCa = new Option<string?>("--upstream-ca") { Description = "PEM file of extra CA certificates trusted for HTTPS upstreams (certificates are always verified)" };
        var tls = new TlsCommandLine();
        var root = new RootCommand("Rama proxy node: an HTTP forward proxy (absolute-form and CONNECT) and a SOCKS5 proxy on one port")
        {
            listen, auth, drain, config, allowOpen, reverse, proxyDb, upstreamMode, upstreamFallback, upstreamAttempts, upstreamBackoff, upstreamCa,
        };
        tls.AddTo(root);
        root.SetAction(_ => 0);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
            {
                await Console.Error.WriteLineAsync("rama-node: " + error.Message).ConfigureAwait(false);
            }

            return 2;
        }

        if (parsed.Action is HelpAction || tls.IsSubcommand(parsed))
        {
            return await parsed.InvokeAsync().ConfigureAwait(false);
        }

        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { ContentRootPath = AppContext.BaseDirectory, Args = [] });
        builder.Configuration.Sources.Clear();
        builder.Configuration.AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true, reloadOnChange: false);
        var configFile = parsed.GetValue(config);
        if (configFile is not null)
        {
            if (!configFile.Exists)
            {
                await Console.Error.WriteLineAsync($"rama-node: --config file '{configFile.FullName}' does not exist").ConfigureAwait(false);
                return 2;
            }

            builder.Configuration.AddJsonFile(configFile.FullName, optional: false, reloadOnChange: false);
        }

        builder.Configuration.AddEnvironmentVariables();

        var options = new NodeOptions();
        try
        {
            builder.Configuration.GetSection(NodeOptions.Section).Bind(options);
        }
        catch (InvalidOperationException ex)
        {
            await Console.Error.WriteLineAsync("rama-node: bad configuration: " + ex.Message).ConfigureAwait(false);
            return 2;
        }

        // The command line wins over every file and variable; a repeatable option replaces the list.
        if (parsed.GetValue(listen) is { Length: > 0 } listenValues)
        {
            options.Listen = [.. listenValues];
        }

        if (parsed.GetValue(auth) is { Length: > 0 } authValues)
        {
            options.Auth = [.. authValues];
        }

        if (parsed.GetValue(reverse) is { Length: > 0 } reverseValues)
        {
            options.Reverse = [.. reverseValues];
        }

        if (parsed.GetValue(drain) is { } seconds)
        {
            options.DrainTimeout = TimeSpan.FromSeconds(seconds);
        }

        if (parsed.GetValue(allowOpen))
        {
            options.AllowOpenProxy = true;
        }

        if (parsed.GetValue(proxyDb) is { } dbPath)
        {
            options.ProxyDb = dbPath;
        }

        var upstream = options.Proxy.Upstream;
        if (parsed.GetValue(upstreamMode) is { } modeText)
        {
            if (!Enum.TryParse<UpstreamMode>(modeText, ignoreCase: true, out var mode) || !Enum.IsDefined(mode))
            {
                await Console.Error.WriteLineAsync($"rama-node: --upstream-mode '{modeText}' must be direct, required or fallback").ConfigureAwait(false);
                return 2;
            }

            upstream = upstream with { Mode = mode };
        }

        if (parsed.GetValue(upstreamFallback) is { } fallback)
        {
            upstream = upstream with { FallbackFilter = fallback, Mode = parsed.GetValue(upstreamMode) is null ? UpstreamMode.Fallback : upstream.Mode };
        }

        if (parsed.GetValue(upstreamAttempts) is { } attempts)
        {
            upstream = upstream with { MaxAttempts = attempts };
        }

        if (parsed.GetValue(upstreamBackoff) is { } backoff)
        {
            upstream = upstream with { BackoffInitial = TimeSpan.FromSeconds(backoff), BackoffMax = TimeSpan.FromSeconds(Math.Max(backoff, upstream.BackoffMax.TotalSeconds)) };
        }

        if (parsed.GetValue(upstreamCa) is { } ca)
        {
            upstream = upstream with { TrustedCaFile = ca };
        }

        options.Proxy = options.Proxy with { Upstream = upstream };
        tls.Apply(parsed, options);
        var problems = options.Validate();
        if (problems.Count > 0)
        {
            foreach (var problem in problems)
            {
                await Console.Error.WriteLineAsync("rama-node: " + problem).ConfigureAwait(false);
            }

            return 2;
        }

        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.DrainTimeout + TimeSpan.FromSeconds(30));
        ProxyDatabaseFile? database = null;
        builder.Services.AddAkka("rama-node", akka => akka
            .ConfigureLoggers(loggers =>
            {
                // Akka's own log goes to Microsoft.Extensions.Logging, like everything else of the node.
                loggers.ClearLoggers();
                loggers.AddLoggerFactory();
            })
            .AddRama(new RamaSettings
            {
                DrainTimeout = options.DrainTimeout,
                Listeners = services =>
                {
                    var forward = TlsCommandLine.ForwardProxy(options, services.GetRequiredService<ILoggerFactory>(), database?.Database);
                    List<ListenerSpec> specs = [.. options.Endpoints.Select((e, i) => new ListenerSpec($"proxy-{i}", e, forward))];
                    specs.AddRange(TlsCommandLine.ExtraListeners(options).Select(l => new ListenerSpec(l.Name, l.Endpoint, l.Stack(services))));
                    return specs;
                },
            }));

        using var host = builder.Build();
        var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Node");
        if (options.ProxyDb is not null)
        {
            try
            {
                database = ProxyDatabaseFile.Open(options.ProxyDb, host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Proxy.Upstream.ProxyDatabase"));
            }
            catch (Exception ex) when (ex is ProxyDatabaseException or IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"rama-node: --proxydb: {ex.Message}").ConfigureAwait(false);
                return 2;
            }
        }

        using var databaseLifetime = database;
        try
        {
            await host.StartAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.IsCancellationRequested)
        {
            // Ctrl+C or SIGTERM before the node was ready: the host cancelled its own start. Stop what did start
            // (listeners bound so far are unbound by coordinated shutdown) and exit as after a drain.
            await host.StopAsync().ConfigureAwait(false);
            logger.LogInformation("Rama node stopped before it was ready");
            return 0;
        }
        catch (ListenerBindException ex)
        {
            await Console.Error.WriteLineAsync("rama-node: could not start: " + ex.Message).ConfigureAwait(false);
            return 2;
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or InvalidOperationException or TimeoutException or AskTimeoutException)
        {
            await Console.Error.WriteLineAsync("rama-node: could not start: " + ex.Message).ConfigureAwait(false);
            return 1;
        }

        var listeners = await host.Services.GetRequiredService<IRequiredActor<ProxyListeners>>().ActorRef
            .Ask<ListenersStatus>(GetListenerStatus.Instance, TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        var bound = listeners.Listeners.Select(l => System.Net.IPEndPoint.Parse(l.Endpoint)).ToList();
        var authText = options.Auth.Count == 0 ? "none" : string.Create(CultureInfo.InvariantCulture, $"{options.Auth.Count} user(s)");
        for (var i = 0; i < bound.Count; i++)
        {
            Console.WriteLine($"Rama node: listening on {bound[i]} ({TlsCommandLine.Describe(options, i, authText)})");
        }

        if (options.Mitm.Enabled)
        {
            Console.WriteLine($"Rama node: MITM on; clients must trust {(string.IsNullOrEmpty(options.Mitm.CaCert) ? Path.Combine(options.Mitm.EffectiveCaDir, Rama.Proxy.Tls.MitmAuthority.CertificateFile) : options.Mitm.CaCert)} (rama-node ca export)");
        }

        if (options.Auth.Count == 0 && bound.Take(options.Endpoints.Count).Any(e => !System.Net.IPAddress.IsLoopback(e.Address)))
        {
            Console.WriteLine("Rama node: WARNING: open proxy on a non-loopback address (--allow-open-proxy)");
        }

        if (database is not null)
        {
            Console.WriteLine($"Rama node: proxy database {database.FilePath}: {database.Database.Count} records, version {database.Database.Version}, " +
                $"mode {options.Proxy.Upstream.Mode.ToString().ToLowerInvariant()}");
        }

        Console.WriteLine("Rama node ready; Ctrl+C or SIGTERM drains and stops it");
        await host.WaitForShutdownAsync().ConfigureAwait(false);
        logger.LogInformation("Rama node stopped");
        return 0;
    }
}
