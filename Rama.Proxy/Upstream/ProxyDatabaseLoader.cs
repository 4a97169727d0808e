using System.Buffers.Text;
using System.Text;
using System.Text.Json;

namespace Rama.Proxy.Upstream;

/// <summary>One problem in a proxy database file: the line (1-based) and the field it concerns.</summary>
public sealed record ProxyDatabaseError(int Line, string Field, string Message)
{
    public override string ToString() => Field.Length == 0 ? $"line {Line}: {Message}" : $"line {Line}, field '{Field}': {Message}";
}

/// <summary>A proxy database file that cannot be loaded; <see cref="Errors"/> lists every problem found (up to a cap).</summary>
public sealed class ProxyDatabaseException(string source, IReadOnlyList<ProxyDatabaseError> errors)
    : FormatException($"{source}: " + string.Join("; ", errors.Take(10)) + (errors.Count > 10 ? $"; and {errors.Count - 10} more" : ""))
{
    public IReadOnlyList<ProxyDatabaseError> Errors { get; } = errors;
}

/// <summary>
/// Reads proxy records from CSV (rama's column order) or JSON. Every row is validated
/// (<see cref="UpstreamProxy.Unusable"/>), ids must be unique (case-insensitive, like filters);
/// all problems are collected with their line and field.
/// </summary>
public static class ProxyDatabaseLoader
{
    /// <summary>
    /// rama's CSV column order (18 columns); optional further columns, each needing the ones before it: the credential
    /// (19th), then Rama's limits, <c>max_connections</c> (20th) and <c>rate</c> (21st, e.g. <c>50/s</c>).
    /// </summary>
    public static readonly IReadOnlyList<string> CsvColumns =
    [
        "id", "tcp", "udp", "http", "https", "socks5", "socks5h", "datacenter", "residential", "mobile",
        "address", "pool_id", "continent", "country", "state", "city", "carrier", "asn", "credential", "max_connections", "rate",
    ];

    private const int RequiredColumns = 18;
    private const int MaxErrors = 100;

    /// <summary>Loads a file: JSON when its first non-blank character is '[' or '{', CSV otherwise.</summary>
    public static IReadOnlyList<UpstreamProxy> LoadFile(string path)
    {
        var text = File.ReadAllText(path);
        return Parse(text, Path.GetFileName(path));
    }

    public static IReadOnlyList<UpstreamProxy> Parse(string text, string source = "proxydb")
    {
        var first = text.AsSpan().TrimStart();
        return !first.IsEmpty && first[0] is '[' or '{' ? ParseJson(text, source) : ParseCsv(text, source);
    }

    // ---- CSV ----------------------------------------------------------------------------------

    /// <summary>
    /// CSV: one record per line; blank lines and lines starting with '#' are skipped; a first row
    /// naming the columns (rama's order) is a header. Fields may be quoted (RFC 4180, "" escapes a quote).
    /// Booleans: true/1 and false/0/empty/null/nil, case-insensitive (rama's reader).
    /// </summary>
    public static IReadOnlyList<UpstreamProxy> ParseCsv(string text, string source = "proxydb.csv")
    {
        var errors = new List<ProxyDatabaseError>();
        var records = new List<(UpstreamProxy, int)>();
        var lineNumber = 0;
        var sawRow = false;
        foreach (var rawLine in text.Split('\n'))
        {
            lineNumber++;
            var line = rawLine.TrimEnd('\r');
            if (line.Trim().Length == 0 || line.TrimStart().StartsWith('#'))
            {
                continue;
            }

            if (!TrySplitCsv(line, out var fields, out var splitError))
            {
                errors.Add(new(lineNumber, "", splitError));
                continue;
            }

            if (!sawRow)
            {
                sawRow = true;
                if (fields.Count > 0 && fields[0].Trim().Equals("id", StringComparison.OrdinalIgnoreCase))
                {
                    CheckHeader(fields, lineNumber, errors);
                    continue;
                }
            }

            if (fields.Count < RequiredColumns || fields.Count > CsvColumns.Count)
            {
                errors.Add(new(lineNumber, "", $"expected {RequiredColumns} to {CsvColumns.Count} columns, found {fields.Count}"));
                continue;
            }

            var row = new RowReader(lineNumber, errors);
            for (var i = 0; i < fields.Count; i++)
            {
                row.Set(CsvColumns[i], fields[i]);
            }

            if (row.Build() is { } proxy)
            {
                records.Add((proxy, lineNumber));
            }

            if (errors.Count >= MaxErrors)
            {
                break;
            }
        }

        return Finish(records, errors, source);
    }

    private static void CheckHeader(List<string> fields, int line, List<ProxyDatabaseError> errors)
    {
        if (fields.Count < RequiredColumns || fields.Count > CsvColumns.Count)
        {
            errors.Add(new(line, "", $"header: expected {RequiredColumns} to {CsvColumns.Count} columns, found {fields.Count}"));
            return;
        }

        for (var i = 0; i < fields.Count; i++)
        {
            if (!fields[i].Trim().Equals(CsvColumns[i], StringComparison.OrdinalIgnoreCase))
            {
                errors.Add(new(line, fields[i].Trim(), $"header column {i + 1} must be '{CsvColumns[i]}' (rama's column order)"));
                return;
            }
        }
    }

    internal static bool TrySplitCsv(string line, out List<string> fields, out string error)
    {
        fields = [];
        error = "";
        var field = new StringBuilder();
        var i = 0;
        while (true)
        {
            field.Clear();
            if (i < line.Length && line[i] == '"')
            {
                i++;
                while (true)
                {
                    if (i >= line.Length)
                    {
                        error = "unterminated quoted field";
                        return false;
                    }

                    if (line[i] == '"')
                    {
                        if (i + 1 < line.Length && line[i + 1] == '"')
                        {
                            field.Append('"');
                            i += 2;
                            continue;
                        }

                        i++;
                        break;
                    }

                    field.Append(line[i++]);
                }

                if (i < line.Length && line[i] != ',')
                {
                    error = $"unexpected '{line[i]}' after a quoted field";
                    return false;
                }
            }
            else
            {
                var end = line.IndexOf(',', i);
                end = end < 0 ? line.Length : end;
                field.Append(line, i, end - i);
                i = end;
            }

            fields.Add(field.ToString());
            if (i >= line.Length)
            {
                return true;
            }

            i++; // the comma
        }
    }

    // ---- JSON ---------------------------------------------------------------------------------

    /// <summary>
    /// JSON: an array of objects (or <c>{"proxies": [...]}</c>) with the CSV column names as keys;
    /// flags are JSON booleans, attributes strings (asn may be a number), absent = false / not set.
    /// </summary>
    public static IReadOnlyList<UpstreamProxy> ParseJson(string text, string source = "proxydb.json")
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var lineStarts = new List<int> { 0 };
        for (var i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] == (byte)'\n')
            {
                lineStarts.Add(i + 1);
            }
        }

        int LineAt(long offset)
        {
            var index = lineStarts.BinarySearch((int)offset);
            return (index >= 0 ? index : ~index - 1) + 1;
        }

        var errors = new List<ProxyDatabaseError>();
        var records = new List<(UpstreamProxy, int)>();
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        try
        {
            Expect(ref reader, errors, LineAt);
            if (reader.TokenType == JsonTokenType.StartObject)
            {
                // {"proxies": [...]}
                reader.Read();
                if (reader.TokenType != JsonTokenType.PropertyName || !reader.ValueTextEquals("proxies"u8))
                {
                    throw new ProxyDatabaseException(source, [new(LineAt(reader.TokenStartIndex), "", "expected an array of records or {\"proxies\": [...]}")]);
                }

                reader.Read();
            }

            if (reader.TokenType != JsonTokenType.StartArray)
            {
                throw new ProxyDatabaseException(source, [new(LineAt(reader.TokenStartIndex), "", "expected an array of records")]);
            }

            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                var recordLine = LineAt(reader.TokenStartIndex);
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    errors.Add(new(recordLine, "", "expected a record object"));
                    reader.Skip();
                    continue;
                }

                var row = new RowReader(recordLine, errors);
                while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
                {
                    var name = reader.GetString()!;
                    reader.Read();
                    var fieldLine = LineAt(reader.TokenStartIndex);
                    if (!CsvColumns.Contains(name))
                    {
                        errors.Add(new(fieldLine, name, "unknown field"));
                        reader.Skip();
                        continue;
                    }

                    string? value;
                    switch (reader.TokenType)
                    {
                        case JsonTokenType.True: value = "true"; break;
                        case JsonTokenType.False: value = "false"; break;
                        case JsonTokenType.Null: value = ""; break;
                        case JsonTokenType.String: value = reader.GetString(); break;
                        case JsonTokenType.Number: value = Encoding.UTF8.GetString(reader.ValueSpan); break;
                        default:
                            errors.Add(new(fieldLine, name, $"unexpected {reader.TokenType}"));
                            reader.Skip();
                            continue;
                    }

                    if (IsFlag(name) && reader.TokenType is not (JsonTokenType.True or JsonTokenType.False or JsonTokenType.Null))
                    {
                        errors.Add(new(fieldLine, name, $"'{value}' is not a boolean (use true or false)"));
                        continue;
                    }

                    row.Set(name, value ?? "", fieldLine);
                }

                if (row.Build() is { } proxy)
                {
                    records.Add((proxy, recordLine));
                }

                if (errors.Count >= MaxErrors)
                {
                    break;
                }
            }
        }
        catch (JsonException ex)
        {
            errors.Add(new((int)(ex.LineNumber ?? 0) + 1, "", "invalid JSON: " + ex.Message));
        }

        return Finish(records, errors, source);
    }

    private static void Expect(ref Utf8JsonReader reader, List<ProxyDatabaseError> errors, Func<long, int> lineAt)
    {
        if (!reader.Read())
        {
            errors.Add(new(lineAt(0), "", "empty JSON document"));
        }
    }

    private static bool IsFlag(string column) => column is "tcp" or "udp" or "http" or "https" or "socks5" or "socks5h" or "datacenter" or "residential" or "mobile";

    // ---- shared -------------------------------------------------------------------------------

    private static IReadOnlyList<UpstreamProxy> Finish(List<(UpstreamProxy Proxy, int Line)> records, List<ProxyDatabaseError> errors, string source)
    {
        var seen = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        foreach (var (proxy, line) in records)
        {
            if (!seen.TryAdd(proxy.Id, line))
            {
                errors.Add(new(line, "id", $"duplicate id '{proxy.Id}' (first on line {seen[proxy.Id]})"));
            }
        }

        if (errors.Count > 0)
        {
            throw new ProxyDatabaseException(source, [.. errors.OrderBy(e => e.Line)]);
        }

        return [.. records.Select(r => r.Proxy)];
    }

    /// <summary>Collects one record's fields, converting and checking each; <see cref="Build"/> validates the whole.</summary>
    private sealed class RowReader(int line, List<ProxyDatabaseError> errors)
    {
        // Indexed by the column's position in CsvColumns (no dictionary per row: a 100k-row file is 100k rows).
        private readonly (string? Value, int Line)[] _fields = new (string?, int)[CsvColumns.Count];
        private readonly int _errorsBefore = errors.Count;

        public void Set(string column, string value, int? at = null)
        {
            var index = IndexOf(column);
            if (_fields[index].Value is not null)
            {
                errors.Add(new(at ?? line, column, "given twice"));
                return;
            }

            _fields[index] = (value, at ?? line);
        }

        private static int IndexOf(string column)
        {
            for (var i = 0; i < CsvColumns.Count; i++)
            {
                if (ReferenceEquals(CsvColumns[i], column) || CsvColumns[i] == column)
                {
                    return i;
                }
            }

            throw new ArgumentOutOfRangeException(nameof(column), column, "not a proxy database column");
        }

        private bool TryGet(string column, out (string Value, int Line) field)
        {
            var found = _fields[IndexOf(column)];
            field = (found.Value ?? "", found.Line);
            return found.Value is not null;
        }

        public UpstreamProxy? Build()
        {
            var id = Text("id");
            if (string.IsNullOrWhiteSpace(id))
            {
                Error("id", "missing (every record needs an id)");
            }

            var addressText = Text("address");
            UpstreamAddress? address = null;
            if (string.IsNullOrWhiteSpace(addressText))
            {
                Error("address", "missing (host:port)");
            }
            else if (!UpstreamAddress.TryParse(addressText, out address, out var addressError))
            {
                Error("address", addressError);
            }

            var credentialText = Text("credential")?.Trim();
            if (!string.IsNullOrEmpty(credentialText) && address is not null)
            {
                if (TryParseCredentialColumn(credentialText, out var credential))
                {
                    address = address with { Credential = credential };
                }
                else
                {
                    Error("credential", "must be user:password or 'Basic <base64 of user:password>'");
                }
            }

            var asnText = Text("asn");
            if (!UpstreamProxy.TryNormalizeAsn(asnText, out var asn))
            {
                Error("asn", $"'{asnText}' is not an ASN (a number 0..4294967295, optionally prefixed AS, or *)");
            }

            int? maxConnections = null;
            var maxText = Text("max_connections")?.Trim();
            if (!string.IsNullOrEmpty(maxText))
            {
                if (int.TryParse(maxText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var max) && max >= 1)
                {
                    maxConnections = max;
                }
                else
                {
                    Error("max_connections", $"'{maxText}' is not a connection limit (a whole number, at least 1; empty: the node's default)");
                }
            }

            Limits.LimitRate? rate = null;
            var rateText = Text("rate")?.Trim();
            if (!string.IsNullOrEmpty(rateText))
            {
                if (Limits.LimitRate.TryParse(rateText, out var parsedRate, out var rateError))
                {
                    rate = parsedRate;
                }
                else
                {
                    Error("rate", rateError);
                }
            }

            var proxy = address is null || id is null ? null : new UpstreamProxy
            {
                Id = id.Trim(),
                Address = address,
                Tcp = Flag("tcp"),
                Udp = Flag("udp"),
                Http = Flag("http"),
                Https = Flag("https"),
                Socks5 = Flag("socks5"),
                Socks5h = Flag("socks5h"),
                Datacenter = Flag("datacenter"),
                Residential = Flag("residential"),
                Mobile = Flag("mobile"),
                Pool = UpstreamProxy.Normalize(Text("pool_id")),
                Continent = UpstreamProxy.Normalize(Text("continent")),
                Country = UpstreamProxy.Normalize(Text("country")),
                State = UpstreamProxy.Normalize(Text("state")),
                City = UpstreamProxy.Normalize(Text("city")),
                Carrier = UpstreamProxy.Normalize(Text("carrier")),
                Asn = asn,
                MaxConnections = maxConnections,
                Rate = rate,
            };

            if (errors.Count > _errorsBefore || proxy is null)
            {
                return null;
            }

            if (proxy.Unusable() is { } why)
            {
                Error("", $"record '{proxy.Id}' is unusable: {why}");
                return null;
            }

            return proxy;
        }

        private string? Text(string column) => TryGet(column, out var f) ? f.Value : null;

        private bool Flag(string column)
        {
            if (!TryGet(column, out var field))
            {
                return false;
            }

            switch (field.Value.Trim().ToLowerInvariant())
            {
                case "true" or "1":
                    return true;
                case "" or "false" or "0" or "null" or "nil":
                    return false;
                default:
                    errors.Add(new(field.Line, column, $"'{field.Value}' is not a boolean (true/1 or false/0/empty)"));
                    return false;
            }
        }

        private void Error(string column, string message) =>
            errors.Add(new(column.Length > 0 && TryGet(column, out var f) ? f.Line : line, column, message));
    }

    private static bool TryParseCredentialColumn(string text, out UpstreamCredential? credential)
    {
        credential = null;
        if (text.StartsWith("basic ", StringComparison.OrdinalIgnoreCase))
        {
            var token = Encoding.ASCII.GetBytes(text[6..].Trim());
            var decoded = new byte[Base64.GetMaxDecodedFromUtf8Length(token.Length)];
            if (Base64.DecodeFromUtf8(token, decoded, out _, out var written) != System.Buffers.OperationStatus.Done)
            {
                return false;
            }

            var pair = Encoding.UTF8.GetString(decoded, 0, written);
            var colon = pair.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                return false;
            }

            credential = new UpstreamCredential(pair[..colon], pair[(colon + 1)..]);
            return true;
        }

        var sep = text.IndexOf(':', StringComparison.Ordinal);
        if (sep <= 0)
        {
            return false;
        }

        credential = new UpstreamCredential(text[..sep], text[(sep + 1)..]);
        return true;
    }
}
