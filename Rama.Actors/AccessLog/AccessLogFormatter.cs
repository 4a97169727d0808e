using System.Buffers;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Rama.Proxy.Core;
using Rama.Proxy.Observability;

namespace Rama.Actors.AccessLog;

/// <summary>
/// Turns access entries into UTF-8 lines, on the access log's stream (never on a connection's path). One instance per
/// stream: it reuses its buffers, so it is not thread-safe.
/// </summary>
internal sealed class AccessLogFormatter : IDisposable
{
    private static readonly JsonWriterOptions s_jsonOptions = new()
    {
        // Correct JSON (quotes, backslashes and control characters escaped) without escaping every non-ASCII or HTML character.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        SkipValidation = true,
    };

    private static readonly string[] s_kinds = Enum.GetNames<AccessKind>().Select(n => n.ToLowerInvariant()).ToArray();

    private readonly AccessLogFormat _format;
    private readonly ArrayBufferWriter<byte> _output = new(64 * 1024);
    private readonly StringBuilder _line = new(512);
    private readonly Utf8JsonWriter _json;

    public AccessLogFormatter(AccessLogFormat format)
    {
        _format = format;
        _json = new Utf8JsonWriter(_output, s_jsonOptions);
    }

    /// <summary>The lines formatted since the last <see cref="Clear"/>.</summary>
    public ReadOnlyMemory<byte> Written => _output.WrittenMemory;

    public void Dispose() => _json.Dispose();

    public void Clear()
    {
        _output.ResetWrittenCount();
        _json.Reset(_output);
    }

    /// <summary>Appends one line (with its <c>\n</c>) to <see cref="Written"/>.</summary>
    public void Append(in AccessLogEntry entry)
    {
        if (_format == AccessLogFormat.Json)
        {
            AppendJson(entry);
        }
        else
        {
            AppendText(entry);
        }
    }

    /// <summary>One line of text: one entry, whatever bytes a client put in a user name or target.</summary>
    internal static string FormatText(in AccessLogEntry entry)
    {
        var line = new StringBuilder();
        AppendText(line, entry);
        return line.ToString();
    }

    // time client kind method target status up=N down=N ms=N user=U upstream=U conn=N [listener=L] [proto=P h2fp=F] [reason=R]
    private void AppendText(in AccessLogEntry entry)
    {
        _line.Clear();
        AppendText(_line, entry);
        var bytes = Encoding.UTF8.GetMaxByteCount(_line.Length);
        var span = _output.GetSpan(bytes);
        var written = 0;
        foreach (var chunk in _line.GetChunks())
        {
            written += Encoding.UTF8.GetBytes(chunk.Span, span[written..]);
        }

        _output.Advance(written);
    }

    private static void AppendText(StringBuilder line, in AccessLogEntry entry)
    {
        var invariant = CultureInfo.InvariantCulture;
        line.Append(invariant, $"{entry.Time.UtcDateTime:yyyy-MM-dd'T'HH:mm:ss.fff'Z'} ");
        AppendClient(line, entry.Client);
        line.Append(' ').Append(KindName(entry.Kind)).Append(' ');
        AppendEscaped(line, entry.Method);
        line.Append(' ');
        AppendTarget(line, entry);
        line.Append(invariant, $" {entry.Status} up={entry.BytesFromClient} down={entry.BytesToClient} ms={entry.Duration.TotalMilliseconds:0.0##} user=");
        AppendEscaped(line, entry.User);
        line.Append(" upstream=");
        AppendEscaped(line, entry.Upstream);
        line.Append(invariant, $" conn={entry.ConnectionId}");
        if (entry.Listener is not null)
        {
            line.Append(" listener=");
            AppendEscaped(line, entry.Listener);
        }

        if (entry.Protocol is not null)
        {
            // HTTP/2 requests only: HTTP/1.x lines stay as they were.
            line.Append(" proto=");
            AppendEscaped(line, entry.Protocol);
            line.Append(" h2fp=");
            AppendEscaped(line, entry.Http2Fingerprint);
        }

        if (entry.Reason is not null)
        {
            // Refusals only (a limit, a rule): other lines stay as they were.
            line.Append(" reason=");
            AppendEscaped(line, entry.Reason);
        }

        line.Append('\n');
    }

    private static void AppendTarget(StringBuilder line, in AccessLogEntry entry)
    {
        if (entry.Kind == AccessKind.Mitm && entry.Authority.Host is not null && entry.Target is not null)
        {
            // A decrypted request: its origin-form target inside the tunnel to host:port.
            line.Append("https://");
            AppendAuthority(line, entry.Authority);
            AppendEscaped(line, entry.Target);
        }
        else if (entry.Target is not null)
        {
            AppendEscaped(line, entry.Target);
        }
        else if (entry.Authority.Host is not null)
        {
            AppendAuthority(line, entry.Authority);
        }
        else
        {
            line.Append('-');
        }
    }

    private static void AppendAuthority(StringBuilder line, Rama.Proxy.Net.HostPort authority)
    {
        var v6 = authority.Host.Contains(':', StringComparison.Ordinal);
        if (v6)
        {
            line.Append('[');
        }

        AppendEscaped(line, authority.Host);
        line.Append(v6 ? "]:" : ":").Append(authority.Port.ToString(CultureInfo.InvariantCulture));
    }

    private static void AppendClient(StringBuilder line, IPEndPoint? client)
    {
        if (client is null)
        {
            line.Append('-');
            return;
        }

        var address = client.Address.IsIPv4MappedToIPv6 ? client.Address.MapToIPv4() : client.Address;
        Span<char> text = stackalloc char[64];
        if (!address.TryFormat(text, out var length))
        {
            line.Append('-');
            return;
        }

        var v6 = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        if (v6)
        {
            line.Append('[');
        }

        line.Append(text[..length]).Append(v6 ? "]:" : ":").Append(client.Port.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>A field as one token: null is "-"; space, quote, backslash and control characters are written as <c>\xHH</c>.</summary>
    private static void AppendEscaped(StringBuilder line, string? value)
    {
        if (value is null)
        {
            line.Append('-');
            return;
        }

        if (value.Length == 0)
        {
            line.Append("\"\"");
            return;
        }

        var start = 0;
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (c > ' ' && c != '"' && c != '\\' && c != '\x7F' && !char.IsControl(c))
            {
                continue;
            }

            line.Append(value, start, i - start).Append("\\x").Append(((int)c).ToString(c > 0xFF ? "X4" : "X2", CultureInfo.InvariantCulture));
            start = i + 1;
        }

        line.Append(value, start, value.Length - start);
    }

    private void AppendJson(in AccessLogEntry entry)
    {
        var json = _json;
        json.WriteStartObject();
        json.WriteString("time"u8, entry.Time.UtcDateTime);
        json.WriteString("kind"u8, KindName(entry.Kind));
        if (entry.Client is { } client)
        {
            var text = new StringBuilder(48);
            AppendClient(text, client);
            json.WriteString("client"u8, text.ToString());
        }
        else
        {
            json.WriteNull("client"u8);
        }

        WriteStringOrNull(json, "user"u8, entry.User);
        WriteStringOrNull(json, "method"u8, entry.Method);
        if (entry.Target is not null)
        {
            json.WriteString("target"u8, entry.Target);
        }
        else if (entry.Authority.Host is not null)
        {
            json.WriteString("target"u8, entry.Authority.ToString());
        }
        else
        {
            json.WriteNull("target"u8);
        }

        if (entry.Authority.Host is not null)
        {
            json.WriteString("authority"u8, entry.Authority.ToString());
        }

        json.WriteNumber("status"u8, entry.Status);
        json.WriteNumber("bytes_up"u8, entry.BytesFromClient);
        json.WriteNumber("bytes_down"u8, entry.BytesToClient);
        json.WriteNumber("duration_ms"u8, Math.Round(entry.Duration.TotalMilliseconds, 3));
        WriteStringOrNull(json, "upstream"u8, entry.Upstream);
        WriteStringOrNull(json, "listener"u8, entry.Listener);
        json.WriteNumber("connection"u8, entry.ConnectionId);
        if (entry.Protocol is not null)
        {
            json.WriteString("protocol"u8, entry.Protocol);
            WriteStringOrNull(json, "h2_fingerprint"u8, entry.Http2Fingerprint);
        }

        if (entry.Reason is not null)
        {
            json.WriteString("reason"u8, entry.Reason);
        }

        json.WriteEndObject();
        json.Flush();
        _output.Write("\n"u8);
        json.Reset(_output);
    }

    private static void WriteStringOrNull(Utf8JsonWriter json, ReadOnlySpan<byte> name, string? value)
    {
        if (value is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, value);
        }
    }

    private static string KindName(AccessKind kind) => (uint)kind < (uint)s_kinds.Length ? s_kinds[(int)kind] : "unknown";
}
