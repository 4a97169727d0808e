using System.Net.Sockets;
using System.Text;
using Rama.Testing;

namespace Rama.IntegrationTests.Upstream;

/// <summary>
/// Four real upstream proxies on loopback, each leaving from its own source address so that the origin
/// (which answers with the address it saw) tells which one carried a request: microsocks (SOCKS5 with
/// RFC 1929 credentials, 127.0.0.11), dante (SOCKS5, name resolved by it, 127.0.0.12), tinyproxy (HTTP
/// with Basic credentials, 127.0.0.13), squid (HTTP, 127.0.0.14).
/// </summary>
public sealed class UpstreamPeersFixture : IAsyncLifetime
{
    public static readonly IReadOnlyDictionary<string, string> SourceOf = new Dictionary<string, string>
    {
        ["ms"] = "127.0.0.11",
        ["dante"] = "127.0.0.12",
        ["tiny"] = "127.0.0.13",
        ["squid"] = "127.0.0.14",
    };

    private readonly List<PeerProcess> _peers = [];

    // Daemons started as root drop privileges to these users; as another user they keep their own.
    private static bool IsRoot => Environment.UserName == "root";

    internal string Directory { get; } = Path.Combine(Path.GetTempPath(), "rama-upstream-" + Guid.NewGuid().ToString("N")[..8]);

    internal RawOrigin Origin { get; private set; } = null!;

    internal IReadOnlyDictionary<string, int> Ports { get; private set; } = new Dictionary<string, int>();

    public string OriginUrl => $"http://127.0.0.1:{Origin.Port}/";

    /// <summary>The id of the upstream whose source address is <paramref name="address"/>.</summary>
    public static string IdOf(string address) => SourceOf.FirstOrDefault(kv => kv.Value == address.Trim()).Key ?? "direct:" + address.Trim();

    public async Task InitializeAsync()
    {
        System.IO.Directory.CreateDirectory(Directory);
        Origin = WhoAmIOrigin();
        var ports = new Dictionary<string, int> { ["ms"] = FreePort(), ["dante"] = FreePort(), ["tiny"] = FreePort(), ["squid"] = FreePort() };
        Ports = ports;

        File.WriteAllText(Path.Combine(Directory, "dante.conf"), $$"""
            logoutput: stderr
            internal: 127.0.0.1 port = {{ports["dante"]}}
            external: {{SourceOf["dante"]}}
            clientmethod: none
            socksmethod: none
            {{(IsRoot ? "user.privileged: root\nuser.unprivileged: nobody" : "")}}
            client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
            socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
            """);
        File.WriteAllText(Path.Combine(Directory, "tinyproxy.conf"), $"""
            {(IsRoot ? "User nobody\nGroup nogroup" : "")}
            Port {ports["tiny"]}
            Listen 127.0.0.1
            Bind {SourceOf["tiny"]}
            Timeout 30
            Allow 127.0.0.1
            MaxClients 200
            LogLevel Warning
            BasicAuth tuser tpass
            """);
        File.WriteAllText(Path.Combine(Directory, "squid.conf"), $"""
            http_port 127.0.0.1:{ports["squid"]}
            tcp_outgoing_address {SourceOf["squid"]}
            acl local src 127.0.0.0/8
            http_access allow local
            http_access deny all
            cache deny all
            access_log none
            cache_log stdio:{Directory}/squid-cache.log
            pid_filename {Directory}/squid.pid
            coredump_dir {Directory}
            shutdown_lifetime 0 seconds
            """);

        var starting = new[]
        {
            PeerProcess.StartAsync("microsocks", "microsocks", ["-i", "127.0.0.1", "-p", ports["ms"].ToString(), "-b", SourceOf["ms"], "-u", "muser", "-P", "mpass"], ports["ms"], Directory),
            PeerProcess.StartAsync("dante", "danted", ["-f", Path.Combine(Directory, "dante.conf"), "-p", Path.Combine(Directory, "dante.pid")], ports["dante"], Directory),
            PeerProcess.StartAsync("tinyproxy", "tinyproxy", ["-d", "-c", Path.Combine(Directory, "tinyproxy.conf")], ports["tiny"], Directory),
            PeerProcess.StartAsync("squid", "squid", ["-N", "-f", Path.Combine(Directory, "squid.conf")], ports["squid"], Directory),
        };
        try
        {
            foreach (var start in starting)
            {
                _peers.Add(await start);
            }
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    /// <summary>The proxy database of the four peers (CSV, rama's column order, with a header).</summary>
    public string DatabaseCsv(params string[] without)
    {
        var rows = new Dictionary<string, string>
        {
            ["ms"] = $"ms,1,0,0,0,1,0,0,1,0,127.0.0.1:{Ports["ms"]},a,na,us,ny,,,7922,muser:mpass",
            ["dante"] = $"dante,1,0,0,0,0,1,0,0,1,127.0.0.1:{Ports["dante"]},b,na,us,ca,,att,20057,",
            ["tiny"] = $"tiny,1,0,1,0,0,0,1,0,0,127.0.0.1:{Ports["tiny"]},a,eu,de,,berlin,,3320,Basic {Convert.ToBase64String("tuser:tpass"u8)}",
            ["squid"] = $"squid,1,0,1,0,0,0,0,1,1,127.0.0.1:{Ports["squid"]},b,na,us,*,*,verizon,7018,",
        };
        return "id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,pool_id,continent,country,state,city,carrier,asn,credential\n"
            + string.Join('\n', rows.Where(kv => !without.Contains(kv.Key)).Select(kv => kv.Value)) + "\n";
    }

    /// <summary>Writes <paramref name="text"/> to <paramref name="path"/> atomically (temp file, then rename over).</summary>
    public static void WriteAtomically(string path, string text)
    {
        var temp = path + ".tmp";
        File.WriteAllText(temp, text);
        File.Move(temp, path, overwrite: true);
    }

    public static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        return ((System.Net.IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>An HTTP origin answering every request with the client address it saw.</summary>
    internal static RawOrigin WhoAmIOrigin() => new(async socket =>
    {
        await TinyHttpOrigin.ReadHeadAsync(socket);
        var body = Encoding.ASCII.GetBytes(((System.Net.IPEndPoint)socket.RemoteEndPoint!).Address.ToString());
        await socket.SendAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n").Concat(body).ToArray());
        socket.Shutdown(SocketShutdown.Send);
    });

    public async Task DisposeAsync()
    {
        foreach (var peer in _peers)
        {
            await peer.DisposeAsync();
        }

        _peers.Clear();
        if (Origin is not null)
        {
            await Origin.DisposeAsync();
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
