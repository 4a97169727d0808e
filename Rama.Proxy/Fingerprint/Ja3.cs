using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Fingerprint;

/// <summary>A JA3 fingerprint: the text and its MD5 (lower-case hex).</summary>
public sealed record Ja3(string Text, string Hash)
{
    /// <summary>
    /// Salesforce JA3 (github.com/salesforce/ja3, README "How it works"):
    /// <c>SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats</c>, decimal values
    /// joined by '-', fields by ','; GREASE values (RFC 8701) removed; an absent field is empty.
    /// SSLVersion is the hello's <c>legacy_version</c> (not supported_versions).
    /// </summary>
    public static Ja3 From(TlsClientHello hello)
    {
        ArgumentNullException.ThrowIfNull(hello);
        var text = new StringBuilder(256);
        text.Append(hello.LegacyVersion.ToString(CultureInfo.InvariantCulture)).Append(',');
        AppendDecimal(text, hello.CipherSuites);
        text.Append(',');
        AppendDecimal(text, hello.Extensions);
        text.Append(',');
        AppendDecimal(text, hello.SupportedGroups);
        text.Append(',');
        var first = true;
        foreach (var format in hello.EcPointFormats)
        {
            text.Append(first ? "" : "-").Append(format.ToString(CultureInfo.InvariantCulture));
            first = false;
        }

        var value = text.ToString();
#pragma warning disable CA5351 // MD5 is what JA3 is defined with: an identifier, not a security hash
        var hash = Convert.ToHexStringLower(MD5.HashData(Encoding.ASCII.GetBytes(value)));
#pragma warning restore CA5351
        return new Ja3(value, hash);
    }

    private static void AppendDecimal(StringBuilder text, IReadOnlyList<ushort> values)
    {
        var first = true;
        foreach (var value in values)
        {
            if (TlsClientHello.IsGrease(value))
            {
                continue;
            }

            text.Append(first ? "" : "-").Append(value.ToString(CultureInfo.InvariantCulture));
            first = false;
        }
    }
}
