using System.Security.Cryptography;
using System.Text;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Fingerprint;

/// <summary>
/// A JA4 TLS client fingerprint (FoxIO, technical_details/JA4.md): <c>a_b_c</c> plus the raw
/// (sorted) form JA4_r that the hashes are computed from.
/// </summary>
public sealed record Ja4(string Fingerprint, string Raw)
{
    private const ushort ServerName = 0x0000;
    private const ushort Alpn = 0x0010;

    public override string ToString() => Fingerprint;

    /// <summary>JA4 over TCP (the "t" prefix). Every rule cites the section of JA4.md it follows.</summary>
    public static Ja4 From(TlsClientHello hello)
    {
        ArgumentNullException.ThrowIfNull(hello);
        var ciphers = hello.CipherSuites.Where(c => !TlsClientHello.IsGrease(c)).ToList();
        var extensions = hello.Extensions.Where(e => !TlsClientHello.IsGrease(e)).ToList();

        // "TLS and DTLS Version": the highest supported_versions value (GREASE ignored), else legacy_version.
        var versions = hello.SupportedVersions.Where(v => !TlsClientHello.IsGrease(v)).ToList();
        var version = versions.Count > 0 ? versions.Max() : hello.LegacyVersion;
        var a = new StringBuilder(10);
        a.Append('t').Append(VersionCode(version))
            // "SNI": d when the server_name extension exists, i otherwise.
            .Append(hello.Extensions.Contains(ServerName) ? 'd' : 'i')
            // "Number of Ciphers" / "Number of Extensions": two digits, GREASE not counted, capped at 99.
            .Append(Math.Min(ciphers.Count, 99).ToString("00", System.Globalization.CultureInfo.InvariantCulture))
            .Append(Math.Min(extensions.Count, 99).ToString("00", System.Globalization.CultureInfo.InvariantCulture))
            .Append(AlpnCode(hello.ApplicationProtocols));

        // "Cipher hash": 4-hex lower-case values sorted, comma-joined.
        var cipherList = string.Join(',', ciphers.Select(Hex4).Order(StringComparer.Ordinal));

        // "Extension hash": sorted, without SNI and ALPN, then '_' and the signature algorithms in order.
        var extensionList = string.Join(',', extensions.Where(e => e is not ServerName and not Alpn).Select(Hex4).Order(StringComparer.Ordinal));
        var signatures = string.Join(',', hello.SignatureAlgorithms.Where(s => !TlsClientHello.IsGrease(s)).Select(Hex4));
        var extensionInput = signatures.Length == 0 ? extensionList : extensionList + "_" + signatures;

        var b = cipherList.Length == 0 ? "000000000000" : Sha256Prefix(cipherList);
        var c = extensionList.Length == 0 ? "000000000000" : Sha256Prefix(extensionInput);
        return new Ja4($"{a}_{b}_{c}", $"{a}_{cipherList}_{extensionInput}");
    }

    private static string VersionCode(ushort version) => version switch
    {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    };

    // "ALPN Extension Value": first and last characters of the first ALPN value; "00" when none;
    // when either end byte is not alphanumeric, the first and last hex digits of the value instead.
    internal static string AlpnCode(IReadOnlyList<byte[]> protocols)
    {
        if (protocols.Count == 0 || protocols[0].Length == 0)
        {
            return "00";
        }

        var value = protocols[0];
        var first = value[0];
        var last = value[^1];
        if (char.IsAsciiLetterOrDigit((char)first) && char.IsAsciiLetterOrDigit((char)last))
        {
            return string.Concat((char)first, (char)last);
        }

        var hex = Convert.ToHexStringLower(value);
        return string.Concat(hex[0], hex[^1]);
    }

    private static string Hex4(ushort value) => value.ToString("x4", System.Globalization.CultureInfo.InvariantCulture);

    internal static string Sha256Prefix(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(text)))[..12];
}
