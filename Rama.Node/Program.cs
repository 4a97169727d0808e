using System.CommandLine;
using System.CommandLine.Help;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Rama.Actors.Hosting;
using Rama.Actors.Proxy;
using Rama.Proxy.Stacks;

namespace Rama.Node;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var listen = new Option<string[]>("--listen") { Description = "Endpoint for HTTP proxy + SOCKS5 (ip:port, repeatable; default 127.0.0.1:8080; port 0 picks one)", Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = false };
        var auth = new Option<string[]>("--auth") { Description = "Proxy user as user:password (repeatable); without it the proxy is open (loopback only)", Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = false };
        var drain = new Option<double?>("--drain-timeout") { Description = "Seconds shutdown waits for connections in flight (default 20)" };
        var config = new Option<FileInfo?>("--config") { Description = "Extra JSON configuration file (same shape as appsettings.json)" };
        var allowOpen = new Option<bool>("--allow-open-proxy") { Description = "Allow a non-loopback endpoint without --auth" };
        var tls = new TlsCommandLine();
        var root = new RootCommand("Rama proxy node: an HTTP forward proxy (absolute-form and CONNECT) and a SOCKS5 proxy on one port")
        {
            listen, auth, drain, config, allowOpen,
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

        if (parsed.GetValue(drain) is { } seconds)
        {
            options.DrainTimeout = TimeSpan.FromSeconds(seconds);
        }

        if (parsed.GetValue(allowOpen))
        {
            options.AllowOpenProxy = true;
        }

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
        builder.Services.AddRama("rama-node", rama => rama
            .WithShutdownPhaseTimeout("service-requests-done", options.DrainTimeout + TimeSpan.FromSeconds(5))
            .WithProxyListeners(new ProxyListenerSettings(
                options.Endpoints,
                services => TlsCommandLine.ForwardProxy(options, services.GetRequiredService<ILoggerFactory>()),
                options.DrainTimeout) { Extra = TlsCommandLine.ExtraListeners(options) }));

        using var host = builder.Build();
        var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Node");
        try
        {
            await host.StartAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or InvalidOperationException or TimeoutException)
        {
            await Console.Error.WriteLineAsync("rama-node: could not start: " + ex.Message).ConfigureAwait(false);
            return 1;
        }

        var bound = host.Services.GetRequiredService<ProxyListeners>().BoundEndpoints;
        var authText = options.Auth.Count == 0 ? "none" : string.Create(CultureInfo.InvariantCulture, $"{options.Auth.Count} user(s)");
        for (var i = 0; i < bound.Count; i++)
        {
            Console.WriteLine($"Rama node: listening on {bound[i]} ({TlsCommandLine.Describe(options, i, authText)})");
        }

        if (options.Mitm.Enabled)
        {
            Console.WriteLine($"Rama node: MITM on; clients must trust {(string.IsNullOrEmpty(options.Mitm.CaCert) ? Path.Combine(options.Mitm.EffectiveCaDir, Rama.Proxy.Tls.MitmAuthority.CertificateFile) : options.Mitm.CaCert)} (rama-node ca export)");
        }

        if (options.Auth.Count == 0 && bound.Any(e => !System.Net.IPAddress.IsLoopback(e.Address)))
        {
            Console.WriteLine("Rama node: WARNING: open proxy on a non-loopback address (--allow-open-proxy)");
        }

        Console.WriteLine("Rama node ready; Ctrl+C or SIGTERM drains and stops it");
        await host.WaitForShutdownAsync().ConfigureAwait(false);
        logger.LogInformation("Rama node stopped");
        return 0;
    }
}
