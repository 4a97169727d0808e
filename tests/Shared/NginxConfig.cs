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
}
