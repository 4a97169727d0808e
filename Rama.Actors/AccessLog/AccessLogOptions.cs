namespace Rama.Actors.AccessLog;

/// <summary>How an access line is written.</summary>
public enum AccessLogFormat
{
    /// <summary>One space-separated line per request or tunnel (see README, "Access log").</summary>
    Text,

    /// <summary>One JSON object per line (JSON Lines), every field named.</summary>
    Json,
}

/// <summary>
/// The node's access log (issue 11, item 6), bound from configuration section <c>Rama:AccessLog</c>
/// (<c>--access-log</c>, <c>--access-log-format</c>, <c>Rama__AccessLog__Destination</c>, ...). Call <see cref="Validate"/> at start-up.
/// </summary>
public sealed record AccessLogOptions
{
    /// <summary>The configuration section these options are bound from.</summary>
    public const string SectionName = "Rama:AccessLog";

    /// <summary>The <see cref="Destination"/> that writes to the process's standard output.</summary>
    public const string Stdout = "stdout";

    /// <summary>The <see cref="Destination"/> that turns the access log off (no line is produced at all).</summary>
    public const string Off = "off";

    /// <summary>
    /// Where lines go: <c>stdout</c> (default: what container runtimes and systemd collect), <c>off</c>, or a file path
    /// (appended to; created with its directory if missing).
    /// </summary>
    public string Destination { get; init; } = Stdout;

    /// <summary>Line format. Default <see cref="AccessLogFormat.Text"/>: the shortest line, readable in a terminal.</summary>
    public AccessLogFormat Format { get; init; } = AccessLogFormat.Text;

    /// <summary>
    /// Lines queued for the writer before new ones are dropped (and counted). Default 16384: at 30k lines/s (about the
    /// reverse proxy's peak on 2 cores) that is half a second of stalled output, which covers a slow terminal or a
    /// disk hiccup, and stays under ~2 MiB of queued entries. Between 1 and 1048576.
    /// </summary>
    public int BufferSize { get; init; } = 16 * 1024;

    /// <summary>Whether the access log is on (<see cref="Destination"/> is not <c>off</c>).</summary>
    public bool Enabled => !string.Equals(Destination?.Trim(), Off, StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether lines go to standard output.</summary>
    public bool IsStdout => string.Equals(Destination?.Trim(), Stdout, StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The problems with these options, each naming the configuration key, the value and what is allowed; empty when valid.
    /// Has no side effects (it does not create the file).
    /// </summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (string.IsNullOrWhiteSpace(Destination))
        {
            problems.Add($"{SectionName}:{nameof(Destination)} is '{Destination}': allowed are 'stdout', 'off' or a file path");
        }
        else if (!IsStdout && Enabled && Destination.IndexOfAny(Path.GetInvalidPathChars()) >= 0)
        {
            problems.Add($"{SectionName}:{nameof(Destination)} is '{Destination}': not a valid file path; allowed are 'stdout', 'off' or a file path");
        }

        if (!Enum.IsDefined(Format))
        {
            problems.Add($"{SectionName}:{nameof(Format)} is '{Format}': allowed are 'Text' or 'Json'");
        }

        if (BufferSize is < 1 or > 1024 * 1024)
        {
            problems.Add($"{SectionName}:{nameof(BufferSize)} is '{BufferSize}': allowed is a number of lines from 1 to 1048576");
        }

        return problems;
    }
}
