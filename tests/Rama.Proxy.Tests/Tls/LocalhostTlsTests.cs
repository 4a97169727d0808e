using System.Collections.Concurrent;
using Rama.Proxy.Observability;
using Rama.Testing;

namespace Rama.Proxy.Tests.Tls;

/// <summary>
/// The set-up the h2-over-TLS tests share (Http2AlpnTests, Http2BrowserTests): a test CA with a <c>localhost</c> /
/// <c>127.0.0.1</c> server certificate, removed on disposal, and an access log that records its entries.
/// </summary>
public abstract class LocalhostTlsTests : IDisposable
{
    protected LocalhostTlsTests() => Localhost = Pki.Issue("localhost", false, "localhost", "127.0.0.1");

    /// <summary>The test CA (its certificate is <see cref="TestPki.CaFile"/>, for curl's <c>--cacert</c>).</summary>
    private protected TestPki Pki { get; } = new();

    /// <summary>PEM files of a server certificate for <c>localhost</c> and <c>127.0.0.1</c>, issued by <see cref="Pki"/>.</summary>
    private protected (string Cert, string Key) Localhost { get; }

    public void Dispose()
    {
        Pki.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>An access log that keeps every entry.</summary>
    protected sealed class RecordingAccessLog : IAccessLog
    {
        public ConcurrentQueue<AccessLogEntry> Entries { get; } = new();

        public bool IsEnabled => true;

        public void Write(in AccessLogEntry entry) => Entries.Enqueue(entry);
    }
}
