using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Rama.Testing;

/// <summary>
/// The nginx.conf of a test origin: one process in the foreground, its pid, error log and temporary files under
/// <c>root</c>, access log off; the <c>http</c> block's own lines (servers, types, gzip, ...) are the caller's.
/// </summary>
internal static class NginxConfig
{
    public static string Text(string root, string http, int workerConnections = 256, string errorLevel = "warn") => $$"""
        daemon off;
        master_process off;
        worker_processes 1;
        pid {{root}}/nginx.pid;
        error_log {{root}}/error.log {{errorLevel}};
        events { worker_connections {{workerConnections}}; }
        http {
          access_log off;
          client_body_temp_path {{root}}/body; proxy_temp_path {{root}}/proxy; fastcgi_temp_path {{root}}/fcgi;
          uwsgi_temp_path {{root}}/uwsgi; scgi_temp_path {{root}}/scgi;
        {{http}}
        }
        """;

    /// <summary>
    /// Runs nginx in the foreground with <paramref name="config"/> (prefix and error log under <paramref name="root"/>) and
    /// returns it once <paramref name="port"/> on 127.0.0.1 accepts. If nginx exits first or does not listen within 20 s it
    /// is killed, and the exception carries its error log.
    /// </summary>
    public static async Task<Process> StartAsync(string root, string config, int port)
    {
        var psi = new ProcessStartInfo("/usr/sbin/nginx") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = root };
        foreach (var arg in (string[])["-p", root, "-c", config, "-e", Path.Combine(root, "error.log")])
        {
            psi.ArgumentList.Add(arg);
        }

        var process = Process.Start(psi)!;
        var deadline = Stopwatch.StartNew();
        while (!process.HasExited && deadline.Elapsed < TimeSpan.FromSeconds(20))
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await probe.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
                return process;
            }
            catch (SocketException)
            {
                await Task.Delay(20); // nginx is not listening yet: poll again (bounded by the deadline above)
            }
        }

        var exited = process.HasExited;
        if (!exited)
        {
            process.Kill(entireProcessTree: true);
        }

        await process.WaitForExitAsync();
        process.Dispose();
        var log = File.Exists(Path.Combine(root, "error.log")) ? await File.ReadAllTextAsync(Path.Combine(root, "error.log")) : "";
        throw new InvalidOperationException($"nginx {(exited ? "exited before listening" : "did not listen within 20 s")} on {port}: {log}");
    }
}
