using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>
/// A real nginx speaking HTTP/2 only on 127.0.0.1:<see cref="Port"/>: h2c (<c>listen ... http2</c>, prior knowledge) or TLS with
/// ALPN h2 and a self-signed certificate made by openssl for 127.0.0.1 (<see cref="Certificate"/>). Every path answers
/// "<c>$server_protocol $request_method $uri $http_host $http_via</c>"; <c>/conn</c> the serial number of the connection; a PUT to <c>/upload/&lt;name&gt;</c> stores the body (WebDAV, 201) in <see cref="Root"/>;
/// <c>/trailers</c> answers "trailer body" with the trailers <c>X-Checksum: abc123</c> and <c>Set-Cookie: x=1</c> (the latter one a
/// trailer may not carry). <c>http2: false</c> makes it a plain HTTP/1.1 origin (trailers then need a chunked body, which nginx chooses).
/// </summary>
internal sealed class NginxH2Origin : IAsyncDisposable
{
    private readonly string _root;
    private readonly Process _process;

    private NginxH2Origin(string root, int port, Process process, X509Certificate2? certificate)
    {
        _root = root;
        Port = port;
        _process = process;
        Certificate = certificate;
    }

    public int Port { get; }

    /// <summary>nginx's root: PUT /upload/x lands in Root/upload/x.</summary>
    public string Root => _root;

    /// <summary>The TLS origin's self-signed certificate (trust it as a root); null for h2c.</summary>
    public X509Certificate2? Certificate { get; }

    public static async Task<NginxH2Origin> StartAsync(bool tls, bool http2 = true)
    {
        var root = Directory.CreateTempSubdirectory("rama-nginx-h2-").FullName;
        var port = Rama.Testing.Ports.Refused();
        X509Certificate2? certificate = null;
        var listen = http2 ? $"listen 127.0.0.1:{port} http2;" : $"listen 127.0.0.1:{port};";
        if (tls)
        {
            await RunAsync("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout", Path.Combine(root, "key.pem"), "-out", Path.Combine(root, "cert.pem"));
            certificate = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(root, "cert.pem"));
            listen = $"listen 127.0.0.1:{port} ssl http2; ssl_certificate {root}/cert.pem; ssl_certificate_key {root}/key.pem;";
        }

        var config = Path.Combine(root, "nginx.conf");
        await File.WriteAllTextAsync(config, NginxConfig.Text(root, $$"""
              client_max_body_size 64m;
              server {
                {{listen}}
                location = /conn { default_type text/plain; return 200 "$connection\n"; }
                location = /trailers { default_type text/plain; add_trailer X-Checksum abc123; add_trailer Set-Cookie x=1; return 200 "trailer body\n"; }
                location /upload/ { root {{root}}; dav_methods PUT; create_full_put_path on; }
                location / { default_type text/plain; return 200 "$server_protocol $request_method $uri $http_host $http_via"; }
              }
            """, workerConnections: 512));
        try
        {
            return new NginxH2Origin(root, port, await NginxConfig.StartAsync(root, config, port), certificate);
        }
        catch
        {
            certificate?.Dispose();
            Directory.Delete(root, recursive: true);
            throw;
        }
    }

    private static async Task RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        using var process = Process.Start(psi)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        _ = process.StandardOutput.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"{file} failed: {await stderr}");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        Certificate?.Dispose();
        Directory.Delete(_root, recursive: true);
    }
}
