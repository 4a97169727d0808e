using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Cryptography;
using Rama.Proxy.Tests.Http.Http2;
using Rama.Proxy.Tls;
using Rama.Testing;

namespace Rama.Proxy.Tests.Tls;

/// <summary>
/// TLS over a connection's pipes: SslStream writes one record per call into <see cref="DuplexPipeStream"/>, and the records
/// of one plaintext flush leave in one flush of the connection (one send), not one each. A bulk download over TLS made one
/// ~8 KiB sendmsg per record before; now ~64 KiB per send.
/// </summary>
public sealed class DuplexPipeStreamTests
{
    [Fact]
    public async Task The_records_of_one_plaintext_flush_leave_in_one_connection_flush_and_arrive_whole()
    {
        using var certificate = Upstream.UpstreamConnectorTests.SelfSignedLocalhost();
        var toClient = new Pipe();
        var toServer = new Pipe();
        var wire = new CountingWriter(toClient.Writer);
        await using var serverSsl = new SslStream(new DuplexPipeStream(new TestDuplexPipe(toServer.Reader, wire)));
        await using var clientSsl = new SslStream(new DuplexPipeStream(new TestDuplexPipe(toClient.Reader, toServer.Writer)), false,
            (_, presented, _, _) => presented is not null && presented.GetCertHashString() == certificate.GetCertHashString()); // this test's own certificate only
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await Task.WhenAll(
            serverSsl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = certificate }, cts.Token),
            clientSsl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "localhost" }, cts.Token)); // the handshake flushes its own messages

        var plaintext = PipeWriter.Create(serverSsl, new StreamPipeWriterOptions(minimumBufferSize: 16 * 1024, leaveOpen: true)); // as SslDuplexPipe's
        var body = RandomNumberGenerator.GetBytes(256 * 1024); // 16 records at least
        var before = wire.Flushes;
        var received = new MemoryStream();
        var reading = Task.Run(async () =>
        {
            var buffer = new byte[64 * 1024];
            while (received.Length < body.Length)
            {
                var read = await clientSsl.ReadAsync(buffer, cts.Token);
                Assert.NotEqual(0, read);
                received.Write(buffer, 0, read);
            }
        }, cts.Token);

        await plaintext.WriteAsync(body, cts.Token); // one write, one flush of the plaintext
        await reading;

        Assert.Equal(body, received.ToArray());
        Assert.Equal(1, wire.Flushes - before);
    }
}
