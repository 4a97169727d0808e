using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;

namespace Rama.Proxy.Tests.Http;

/// <summary>An application behind the HTTP server reaches the client connection from every request, without any stack setup.</summary>
public sealed class HttpServerConnectionTests
{
    [Fact]
    public async Task Every_request_carries_the_connection_it_arrived_on()
    {
        var app = Service.FromFunc<HttpRequest, HttpResponse>((request, _) => ValueTask.FromResult(
            HttpResponse.Text(200, request.Connection is { } c ? $"{c.Id} {c.RemoteEndPoint}" : "none")));
        await using var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Start(HttpServer.Create(app));
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(server.LocalEndPoint);
        var local = (IPEndPoint)client.LocalEndPoint!;

        var first = await ExchangeAsync(client);
        var second = await ExchangeAsync(client); // same keep-alive connection

        Assert.NotEqual("none", first);
        Assert.Equal(first, second);
        Assert.EndsWith($" {local}", first, StringComparison.Ordinal); // the client's own address and port
    }

    private static async Task<string> ExchangeAsync(Socket client)
    {
        await client.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), SocketFlags.None);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var buffer = new byte[4096];
        var text = "";
        while (true)
        {
            var read = await client.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            Assert.NotEqual(0, read);
            text += Encoding.ASCII.GetString(buffer, 0, read);
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end < 0)
            {
                continue;
            }

            var length = int.Parse(text.Split("\r\n").First(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))[15..].Trim(),
                System.Globalization.CultureInfo.InvariantCulture);
            if (text.Length >= end + 4 + length)
            {
                return text.Substring(end + 4, length).TrimEnd('\n');
            }
        }
    }
}
