using System.Text.Json;
using System.Text.Json.Serialization;

// The admin endpoint's wire protocol, shared by the host side (Rama.Admin) and pbm (Rama.Cmd links this file: one
// definition, no Akka). A client sends one request line of JSON (at most MaxRequestBytes, within RequestTimeout);
// the server answers with NDJSON frames, the last of which is an "end" frame with the exit code.
namespace Rama.Admin.Admin;

/// <summary>One command: <c>{"token":"..","palette":"cluster","command":"show","args":["--json"]}</c>.</summary>
public sealed record AdminRequest
{
    /// <summary>The admin token; required when the endpoint has one (always, off loopback).</summary>
    public string? Token { get; init; }

    /// <summary>The palette (<c>cluster</c>, <c>actor</c>, <c>node</c>, ...); <c>help</c> lists them all.</summary>
    public string? Palette { get; init; }

    public string? Command { get; init; }

    public IReadOnlyList<string> Args { get; init; } = [];
}

/// <summary>The frame types of an answer.</summary>
public static class AdminFrameType
{
    /// <summary>A table: <see cref="AdminFrame.Name"/>, <see cref="AdminFrame.Columns"/>, <see cref="AdminFrame.Rows"/>.</summary>
    public const string Table = "table";

    /// <summary>Named values (<see cref="AdminFrame.Fields"/>), e.g. a member count.</summary>
    public const string Fields = "fields";

    /// <summary>A line for people (<see cref="AdminFrame.Text"/>).</summary>
    public const string Text = "text";

    /// <summary>One event of a stream (<c>cluster tail</c>): <see cref="AdminFrame.Name"/> is its kind, <see cref="AdminFrame.Fields"/> its data, <see cref="AdminFrame.Text"/> a line for people.</summary>
    public const string Event = "event";

    /// <summary>The command failed or was refused: <see cref="AdminFrame.Message"/>.</summary>
    public const string Error = "error";

    /// <summary>The last frame: <see cref="AdminFrame.Exit"/> is the command's exit code.</summary>
    public const string End = "end";
}

/// <summary>One frame of an answer (one JSON line); only the properties of its <see cref="Type"/> are set.</summary>
public sealed record AdminFrame
{
    public required string Type { get; init; }

    public string? Name { get; init; }

    public IReadOnlyList<string>? Columns { get; init; }

    public IReadOnlyList<IReadOnlyList<string>>? Rows { get; init; }

    public IReadOnlyDictionary<string, string>? Fields { get; init; }

    public string? Text { get; init; }

    public string? Message { get; init; }

    public int? Exit { get; init; }

    public static AdminFrame Table(string name, IReadOnlyList<string> columns, IReadOnlyList<IReadOnlyList<string>> rows) =>
        new() { Type = AdminFrameType.Table, Name = name, Columns = columns, Rows = rows };

    public static AdminFrame Values(IReadOnlyDictionary<string, string> fields) => new() { Type = AdminFrameType.Fields, Fields = fields };

    public static AdminFrame Line(string text) => new() { Type = AdminFrameType.Text, Text = text };

    public static AdminFrame Event(string name, IReadOnlyDictionary<string, string> fields, string text) =>
        new() { Type = AdminFrameType.Event, Name = name, Fields = fields, Text = text };

    public static AdminFrame Error(string message) => new() { Type = AdminFrameType.Error, Message = message };

    public static AdminFrame End(int exit) => new() { Type = AdminFrameType.End, Exit = exit };
}

/// <summary>Exit codes of <c>pbm</c>; the server's "end" frame carries the first three.</summary>
public static class AdminExitCodes
{
    /// <summary>The command ran.</summary>
    public const int Ok = 0;

    /// <summary>The command ran and failed (e.g. an unknown member address, a node that runs alone).</summary>
    public const int Failed = 1;

    /// <summary>Bad usage: unknown palette or command, bad arguments, a bad request line.</summary>
    public const int Usage = 2;

    /// <summary>The node cannot be reached (refused, timed out) or went away mid-answer.</summary>
    public const int Unreachable = 3;

    /// <summary>The admin token is missing or wrong.</summary>
    public const int Refused = 4;
}

/// <summary>Limits and encoding of the protocol.</summary>
public static class AdminProtocol
{
    /// <summary>The default admin port (ARCHITECTURE.md: admin 9110).</summary>
    public const int DefaultPort = 9110;

    /// <summary>The longest request line, newline excluded: 64 KiB.</summary>
    public const int MaxRequestBytes = 64 * 1024;

    /// <summary>The help palette every endpoint answers: the list of palettes and commands.</summary>
    public const string HelpPalette = "help";

    /// <summary>How long the server waits for the request line: 5 s.</summary>
    public static TimeSpan RequestTimeout { get; } = TimeSpan.FromSeconds(5);

    /// <summary>The frame as one JSON line (UTF-8, newline-terminated).</summary>
    public static byte[] Encode(AdminFrame frame) => Line(JsonSerializer.SerializeToUtf8Bytes(frame, AdminJsonContext.Default.AdminFrame));

    /// <summary>The request as one JSON line (UTF-8, newline-terminated).</summary>
    public static byte[] Encode(AdminRequest request) => Line(JsonSerializer.SerializeToUtf8Bytes(request, AdminJsonContext.Default.AdminRequest));

    /// <summary>Parses a frame line; null when it is not a frame.</summary>
    public static AdminFrame? DecodeFrame(ReadOnlySpan<byte> line)
    {
        try
        {
            return JsonSerializer.Deserialize(line, AdminJsonContext.Default.AdminFrame);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Parses a request line; null when it is not a request.</summary>
    public static AdminRequest? DecodeRequest(ReadOnlySpan<byte> line)
    {
        try
        {
            return JsonSerializer.Deserialize(line, AdminJsonContext.Default.AdminRequest);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static byte[] Line(byte[] json)
    {
        var line = new byte[json.Length + 1];
        json.CopyTo(line, 0);
        line[^1] = (byte)'\n';
        return line;
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(AdminRequest))]
[JsonSerializable(typeof(AdminFrame))]
internal sealed partial class AdminJsonContext : JsonSerializerContext
{
}
