using System.Globalization;
using System.Text;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Upstreams;

/// <summary>
/// One proxy record as one CSV line in rama's column order (<see cref="ProxyDatabaseLoader.CsvColumns"/>), the form the
/// fleet stores in Akka.DistributedData (so no custom serializer) and <c>pbm proxydb add</c> accepts. Parsing goes
/// through <see cref="ProxyDatabaseLoader"/>, so a record is validated the same way as in a file.
/// </summary>
internal static class ProxyRecordCsv
{
    /// <summary>The record as a CSV line; the credential (if any) in the 19th column as <c>Basic &lt;base64&gt;</c> so any character survives.</summary>
    public static string Format(UpstreamProxy record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var address = record.Address;
        var scheme = address.Scheme is { } s ? UpstreamAddress.ProtocolName(s) + "://" : "";
        var credential = address.Credential is { } c
            ? "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(c.User + ":" + c.Password))
            : "";
        string[] fields =
        [
            record.Id, Flag(record.Tcp), Flag(record.Udp), Flag(record.Http), Flag(record.Https), Flag(record.Socks5), Flag(record.Socks5h),
            Flag(record.Datacenter), Flag(record.Residential), Flag(record.Mobile), scheme + address.Endpoint.ToString(),
            record.Pool ?? "", record.Continent ?? "", record.Country ?? "", record.State ?? "", record.City ?? "", record.Carrier ?? "", record.Asn ?? "",
            credential,
        ];
        if (record.MaxConnections is not null || record.Rate is not null)
        {
            fields = [.. fields, record.MaxConnections?.ToString(CultureInfo.InvariantCulture) ?? "", record.Rate?.ToString() ?? ""];
        }

        return string.Join(',', fields.Select(Quote));
    }

    /// <summary>
    /// Parses one record given as a CSV line (rama's order) or a JSON object; throws <see cref="ProxyDatabaseException"/>
    /// naming the field when it is not a valid record, or when the text holds other than exactly one record.
    /// </summary>
    public static UpstreamProxy ParseOne(string text, string source = "record")
    {
        ArgumentNullException.ThrowIfNull(text);
        var trimmed = text.Trim();
        var records = trimmed.StartsWith('{')
            ? ProxyDatabaseLoader.ParseJson("[" + trimmed + "]", source)
            : ProxyDatabaseLoader.ParseCsv(trimmed, source);
        return records.Count == 1
            ? records[0]
            : throw new ProxyDatabaseException(source, [new ProxyDatabaseError(1, "", $"expected one record, found {records.Count.ToString(CultureInfo.InvariantCulture)}")]);
    }

    /// <summary>The records of one partition's lines, in any order; a line that no longer parses is skipped and reported to <paramref name="onBadLine"/>.</summary>
    public static List<UpstreamProxy> ParseMany(IEnumerable<string> lines, Action<string, ProxyDatabaseException>? onBadLine = null)
    {
        var all = lines.ToList();
        try
        {
            return [.. ProxyDatabaseLoader.ParseCsv(string.Join('\n', all), "replica")];
        }
        catch (ProxyDatabaseException)
        {
            // Only a record written by another version could fail here: keep every good one.
            var good = new List<UpstreamProxy>(all.Count);
            foreach (var line in all)
            {
                try
                {
                    good.Add(ParseOne(line, "replica"));
                }
                catch (ProxyDatabaseException ex)
                {
                    onBadLine?.Invoke(line, ex);
                }
            }

            return good;
        }
    }

    private static string Flag(bool value) => value ? "true" : "false";

    // RFC 4180: quote a field holding a comma, a quote or a line break; double the quotes inside.
    private static string Quote(string field) =>
        field.AsSpan().IndexOfAny(",\"\r\n") < 0 ? field : "\"" + field.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}
