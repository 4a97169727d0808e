using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Rama.Admin.Admin;

namespace Rama.Cmd;

/// <summary>
/// <c>pbm [host:port] &lt;palette&gt; &lt;command&gt; [args] [--json] [--token T]</c>: parses the command line, sends
/// one request to the admin endpoint and prints the answer (aligned tables for people; <c>--json</c>: one JSON document,
/// or one JSON line per event for <c>tail</c>). Errors are one line on stderr; the exit codes are <see cref="AdminExitCodes"/>.
/// </summary>
internal sealed class PbmCommand(TextWriter output, TextWriter error, Func<string, string?> environment)
{
    /// <summary>The environment variable with the admin token (<c>--token</c> wins).</summary>
    public const string TokenVariable = "PBM_TOKEN";

    /// <summary>How long a command (other than <c>tail</c>) may wait for its next frame.</summary>
    public static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(15);

    // Output for a terminal or a script, never HTML: '+' of a time stays '+', not \u002B.
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly JsonSerializerOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Usage =>
        $"""
         pbm: the admin client of a Rama fleet (the admin endpoint of any node or lighthouse)

         usage: pbm [host:port] <palette> <command> [args] [--json] [--token <token>]
                pbm [host:port] help        the palettes and commands of that endpoint
                pbm --help | --version

           host:port       the admin endpoint (default 127.0.0.1:{AdminProtocol.DefaultPort}; a node's --admin)
           --json          JSON for scripts: one document, or one line per event for a tail
           --token <t>     the admin token (a node's --admin-token); default ${TokenVariable}

         palettes (on the endpoint): cluster show|leader|leave|down|join|down-unreachable|tail,
                                     actor hierarchy, node status (proxy nodes)

         exit codes:
           {AdminExitCodes.Ok}  ok (a tail stopped with Ctrl+C too)
           {AdminExitCodes.Failed}  the command failed (the message says why)
           {AdminExitCodes.Usage}  usage: unknown palette or command, bad arguments
           {AdminExitCodes.Unreachable}  the endpoint cannot be reached (refused, no answer within 3 s) or went away
           {AdminExitCodes.Refused}  bad or missing admin token
         """;

    public async Task<int> RunAsync(IReadOnlyList<string> args, CancellationToken stop)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (!TryParse(args, out var parsed, out var problem))
        {
            await error.WriteLineAsync($"pbm: {problem} (pbm --help)").ConfigureAwait(false);
            return AdminExitCodes.Usage;
        }

        if (parsed.Version)
        {
            var version = typeof(PbmCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";
            await output.WriteLineAsync($"pbm {version}").ConfigureAwait(false);
            return AdminExitCodes.Ok;
        }

        if (parsed.Help)
        {
            await output.WriteLineAsync(Usage).ConfigureAwait(false);
            return await HelpFromEndpointAsync(parsed, stop).ConfigureAwait(false);
        }

        var request = new AdminRequest
        {
            Token = parsed.Token ?? environment(TokenVariable),
            Palette = parsed.Palette,
            Command = parsed.Command,
            Args = parsed.Args,
        };
        try
        {
            await using var client = await AdminClient.ConnectAsync(parsed.Host, parsed.Port, stop).ConfigureAwait(false);
            await client.SendAsync(request, stop).ConfigureAwait(false);
            var streaming = parsed.Command == "tail";
            return await PrintAnswerAsync(client, parsed.Json, streaming, stop).ConfigureAwait(false);
        }
        catch (AdminUnreachableException ex)
        {
            await error.WriteLineAsync("pbm: " + ex.Message).ConfigureAwait(false);
            return AdminExitCodes.Unreachable;
        }
        catch (InvalidDataException ex)
        {
            await error.WriteLineAsync("pbm: " + ex.Message).ConfigureAwait(false);
            return AdminExitCodes.Unreachable;
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            return AdminExitCodes.Ok; // Ctrl+C: a tail's normal end
        }
    }

    private async Task<int> HelpFromEndpointAsync(Parsed parsed, CancellationToken stop)
    {
        try
        {
            await using var client = await AdminClient.ConnectAsync(parsed.Host, parsed.Port, stop).ConfigureAwait(false);
            await client.SendAsync(new AdminRequest { Token = parsed.Token ?? environment(TokenVariable), Palette = AdminProtocol.HelpPalette }, stop).ConfigureAwait(false);
            await output.WriteLineAsync().ConfigureAwait(false);
            await output.WriteLineAsync($"palettes of {client.Target}:").ConfigureAwait(false);
            var exit = await PrintAnswerAsync(client, parsed.Json, streaming: false, stop).ConfigureAwait(false);
            return exit == AdminExitCodes.Ok ? AdminExitCodes.Ok : exit;
        }
        catch (Exception ex) when (ex is AdminUnreachableException or InvalidDataException)
        {
            await error.WriteLineAsync($"pbm: (the palettes are listed when the endpoint answers: {ex.Message})").ConfigureAwait(false);
            return AdminExitCodes.Ok;
        }
    }

    /// <summary>Reads frames until "end" and prints them; the end frame's exit is the result.</summary>
    private async Task<int> PrintAnswerAsync(AdminClient client, bool json, bool streaming, CancellationToken stop)
    {
        var document = new JsonObject();
        while (true)
        {
            AdminFrame? frame;
            if (streaming)
            {
                frame = await client.ReadAsync(stop).ConfigureAwait(false);
            }
            else
            {
                using var idle = CancellationTokenSource.CreateLinkedTokenSource(stop);
                idle.CancelAfter(AnswerTimeout);
                try
                {
                    frame = await client.ReadAsync(idle.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!stop.IsCancellationRequested)
                {
                    throw new AdminUnreachableException($"{client.Target} sent no answer within {AnswerTimeout.TotalSeconds:0} s");
                }
            }

            if (frame is null)
            {
                throw new AdminUnreachableException($"{client.Target} closed the connection before the answer ended (the node went away?)");
            }

            switch (frame.Type)
            {
                case AdminFrameType.End:
                    if (json && !streaming && document.Count > 0)
                    {
                        await output.WriteLineAsync(document.ToJsonString(Indented)).ConfigureAwait(false);
                    }

                    await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                    return frame.Exit ?? AdminExitCodes.Failed;
                case AdminFrameType.Error:
                    await error.WriteLineAsync("pbm: " + frame.Message).ConfigureAwait(false);
                    break;
                case AdminFrameType.Event when json:
                    await output.WriteLineAsync(ToJson(frame.Fields).ToJsonString(Compact)).ConfigureAwait(false);
                    await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                    break;
                case AdminFrameType.Event:
                    var time = frame.Fields?.GetValueOrDefault("time") is { } t && DateTimeOffset.TryParse(t, CultureInfo.InvariantCulture, DateTimeStyles.None, out var at)
                        ? at.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture) + " "
                        : "";
                    await output.WriteLineAsync(time + frame.Text).ConfigureAwait(false);
                    await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                    break;
                case var _ when json:
                    AddTo(document, frame);
                    break;
                case AdminFrameType.Table:
                    await output.WriteAsync(FormatTable(frame.Columns ?? [], frame.Rows ?? [], frame.Name)).ConfigureAwait(false);
                    break;
                case AdminFrameType.Fields:
                    foreach (var (key, value) in frame.Fields ?? new Dictionary<string, string>())
                    {
                        await output.WriteLineAsync($"{key}: {value}").ConfigureAwait(false);
                    }

                    break;
                case AdminFrameType.Text:
                    await output.WriteLineAsync(frame.Text).ConfigureAwait(false);
                    break;
                default:
                    break; // a frame type of a newer endpoint: skipped
            }
        }
    }

    /// <summary>Tables become arrays of objects under their name; fields merge into the document; text lines collect under "text".</summary>
    private static void AddTo(JsonObject document, AdminFrame frame)
    {
        switch (frame.Type)
        {
            case AdminFrameType.Table:
                var columns = frame.Columns ?? [];
                var rows = new JsonArray();
                foreach (var row in frame.Rows ?? [])
                {
                    var item = new JsonObject();
                    for (var i = 0; i < columns.Count && i < row.Count; i++)
                    {
                        item[columns[i]] = row[i];
                    }

                    rows.Add(item);
                }

                document[frame.Name ?? "rows"] = rows;
                break;
            case AdminFrameType.Fields:
                foreach (var (key, value) in frame.Fields ?? new Dictionary<string, string>())
                {
                    document[key] = value;
                }

                break;
            case AdminFrameType.Text:
                if (document["text"] is not JsonArray lines)
                {
                    document["text"] = lines = [];
                }

                lines.Add(frame.Text);
                break;
            default:
                break;
        }
    }

    private static JsonObject ToJson(IReadOnlyDictionary<string, string>? fields)
    {
        var item = new JsonObject();
        foreach (var (key, value) in fields ?? new Dictionary<string, string>())
        {
            item[key] = value;
        }

        return item;
    }

    /// <summary>Columns padded to their widest cell, a header and a rule; the last column is not padded.</summary>
    internal static string FormatTable(IReadOnlyList<string> columns, IReadOnlyList<IReadOnlyList<string>> rows, string? name)
    {
        var text = new StringBuilder();
        if (rows.Count == 0)
        {
            return $"(no {name ?? "rows"})\n";
        }

        var widths = columns.Select((c, i) => Math.Max(c.Length, rows.Max(r => i < r.Count ? r[i].Length : 0))).ToArray();
        void Line(IReadOnlyList<string> cells)
        {
            for (var i = 0; i < columns.Count; i++)
            {
                var cell = i < cells.Count ? cells[i] : "";
                text.Append(i == columns.Count - 1 ? cell : cell.PadRight(widths[i] + 2));
            }

            text.Append('\n');
        }

        Line([.. columns.Select(c => c.ToUpperInvariant())]);
        Line([.. widths.Select(w => new string('-', w))]);
        foreach (var row in rows)
        {
            Line(row);
        }

        // Trailing spaces of rows whose last cells are empty.
        return string.Join('\n', text.ToString().Split('\n').Select(l => l.TrimEnd()));
    }

    internal sealed record Parsed
    {
        public string Host { get; init; } = "127.0.0.1";

        public int Port { get; init; } = AdminProtocol.DefaultPort;

        public string? Palette { get; init; }

        public string? Command { get; init; }

        public List<string> Args { get; } = [];

        public bool Json { get; init; }

        public string? Token { get; init; }

        public bool Help { get; init; }

        public bool Version { get; init; }
    }

    /// <summary>Parses the command line: options anywhere; the first positional that is <c>host:port</c> is the endpoint.</summary>
    internal static bool TryParse(IReadOnlyList<string> args, out Parsed parsed, out string? problem)
    {
        parsed = new Parsed();
        problem = null;
        var positional = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            switch (arg)
            {
                case "--json":
                    parsed = parsed with { Json = true };
                    break;
                case "--help" or "-h" or "-?":
                    parsed = parsed with { Help = true };
                    break;
                case "--version":
                    parsed = parsed with { Version = true };
                    break;
                case "--token":
                    if (i + 1 >= args.Count)
                    {
                        problem = "--token needs a value";
                        return false;
                    }

                    parsed = parsed with { Token = args[++i] };
                    break;
                default:
                    if (arg.StartsWith("--token=", StringComparison.Ordinal))
                    {
                        parsed = parsed with { Token = arg["--token=".Length..] };
                    }
                    else
                    {
                        positional.Add(arg);
                    }

                    break;
            }
        }

        var next = 0;
        if (positional.Count > 0 && TryEndpoint(positional[0], out var host, out var port))
        {
            parsed = parsed with { Host = host, Port = port };
            next = 1;
        }
        else if (positional.Count > 0 && positional[0].Contains(':', StringComparison.Ordinal))
        {
            problem = $"'{positional[0]}' is not host:port (a port from 1 to 65535)";
            return false;
        }

        if (positional.Count > next && positional[next].Equals(AdminProtocol.HelpPalette, StringComparison.OrdinalIgnoreCase))
        {
            parsed = parsed with { Help = true };
            return true;
        }

        if (parsed.Help || parsed.Version)
        {
            return true;
        }

        if (positional.Count < next + 2)
        {
            problem = positional.Count == next ? "no palette and command given" : $"no command given for the palette '{positional[next]}'";
            return false;
        }

        parsed = parsed with { Palette = positional[next], Command = positional[next + 1] };
        parsed.Args.AddRange(positional.Skip(next + 2));
        if (parsed.Json)
        {
            parsed.Args.Add("--json"); // palettes may shape their answer for scripts
        }

        return true;
    }

    private static bool TryEndpoint(string text, out string host, out int port)
    {
        host = "";
        port = 0;
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535)
        {
            return false;
        }

        host = text[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }

        return host.Length > 0 && !host.Contains("//", StringComparison.Ordinal);
    }
}
