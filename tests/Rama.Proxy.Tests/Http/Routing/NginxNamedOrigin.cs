using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Routing;

/// <summary>
/// A real nginx (one process, no master, generated config in a temporary directory) on 127.0.0.1:<see cref="Port"/>
/// answering every path with its name (no newline) and an <c>X-Origin</c> header; <c>/health</c> answers 200 while the
/// file <c>healthy</c> exists in its root (503 otherwise). Can be killed (SIGKILL) and started again on the same port.
/// </summary>
internal sealed class NginxNamedOrigin : IAsyncDisposable
{
    private readonly string _root;
    private readonly string _config;
    private Process? _process;

    private NginxNamedOrigin(string name, int port, string root, string config)
    {
        Name = name;
        Port = port;
        _root = root;
        _config = config;
    }

    public string Name { get; }

    public int Port { get; }

    public string Address => $"http://127.0.0.1:{Port}";

    /// <summary>Whether /health answers 200.</summary>
    public bool Healthy
    {
        set
        {
            var file = Path.Combine(_root, "healthy");
            if (value)
            {
                File.WriteAllText(file, "ok");
            }
            else
            {
                File.Delete(file);
            }
        }
    }

    public static async Task<NginxNamedOrigin> StartAsync(string name)
    {
        var root = Directory.CreateTempSubdirectory($"rama-nginx-{name}-").FullName;
        var port = Rama.Testing.Ports.Refused();
        var config = Path.Combine(root, "nginx.conf");
        await File.WriteAllTextAsync(config, NginxConfig.Text(root, $$"""
              keepalive_requests 100000;
              server {
                listen 127.0.0.1:{{port}};
                root {{root}};
                location = /health { default_type text/plain; try_files /healthy =503; }
                location / { default_type text/plain; add_header X-Origin {{name}} always; return 200 "{{name}}"; }
              }
            """, workerConnections: 512));
        var origin = new NginxNamedOrigin(name, port, root, config) { Healthy = true };
        await origin.StartAsync();
        return origin;
    }

    /// <summary>Starts (again) and waits until the port accepts.</summary>
    public async Task StartAsync()
    {
        _process = await NginxConfig.StartAsync(_root, _config, Port);
    }

    /// <summary>SIGKILL: connections are reset, the port refuses.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }

        _process?.Dispose();
        _process = null;
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        Directory.Delete(_root, recursive: true);
    }
}
