using System.Diagnostics;
using Rama.Proxy.Core;

namespace Rama.Proxy.Fingerprint;

/// <summary>The attributes of Rama's spans (<see cref="Observability.ProxyTracing"/>) that a connection's TLS fingerprints give.</summary>
internal static class FingerprintTracing
{
    /// <summary><c>rama.fingerprint.ja4</c> of a TLS connection (from the <see cref="TlsFingerprints"/> in its <paramref name="extensions"/>).</summary>
    internal static void TagConnection(Activity activity, Extensions extensions)
    {
        if (extensions.Get<TlsFingerprints>() is { } tls)
        {
            activity.SetTag("rama.fingerprint.ja4", tls.Ja4.Fingerprint);
        }
    }
}
