using System.Reflection;
using Microsoft.Extensions.Configuration;

namespace Rama.Admin.Options;

/// <summary>Exit codes of Rama's executables.</summary>
public static class ExitCodes
{
    /// <summary>Stopped normally (also <c>--version</c>, <c>--help</c>, <c>config show</c>).</summary>
    public const int Ok = 0;

    /// <summary>Could not start for a reason outside the operator's options (e.g. a timeout while starting).</summary>
    public const int Failed = 1;

    /// <summary>Bad command line or configuration, or an address that cannot be bound: fix the options. Also: the fleet
    /// refused this member's proof of membership (another cluster secret or CA).</summary>
    public const int BadOptions = 2;

    /// <summary>The fleet downed this member (split-brain resolver, <c>pbm cluster down</c>): restart it to rejoin as a new incarnation.</summary>
    public const int Downed = 3;
}

/// <summary>
/// The start of every Rama executable: parse the command line, answer <c>--help</c> and <c>--version</c>, merge the
/// configuration layers. The caller then reads its options records with an <see cref="OptionsReader"/> and, for
/// <c>config show</c>, prints what it read.
/// </summary>
public sealed class RamaStartup
{
    private RamaStartup(RamaCommandLine commandLine, CommandLineResult parsed, IConfigurationRoot? configuration, int? exitCode)
    {
        CommandLine = commandLine;
        Parsed = parsed;
        Configuration = configuration;
        ExitCode = exitCode;
    }

    public RamaCommandLine CommandLine { get; }

    public CommandLineResult Parsed { get; }

    /// <summary>The merged configuration; null when <see cref="ExitCode"/> is set.</summary>
    public IConfigurationRoot? Configuration { get; }

    /// <summary>Set when the executable is done (help, version, a syntax error, an unreadable file): exit with it.</summary>
    public int? ExitCode { get; }

    /// <summary>Parses and merges; writes help, the version or the errors (prefixed with the tool's name).</summary>
    public static async Task<RamaStartup> RunAsync(RamaCommandLine commandLine, string[] args, Assembly entry, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(commandLine);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        var parsed = commandLine.Parse(args);
        if (parsed.Version)
        {
            await output.WriteLineAsync(RamaConfiguration.VersionLine(commandLine.Tool, entry)).ConfigureAwait(false);
            return new(commandLine, parsed, null, ExitCodes.Ok);
        }

        if (parsed.Errors.Count > 0)
        {
            foreach (var message in parsed.Errors)
            {
                await error.WriteLineAsync($"{commandLine.Tool}: {message}").ConfigureAwait(false);
            }

            return new(commandLine, parsed, null, ExitCodes.BadOptions);
        }

        if (parsed.Help)
        {
            return new(commandLine, parsed, null, await parsed.ParseResult.InvokeAsync().ConfigureAwait(false));
        }

        try
        {
            return new(commandLine, parsed, RamaConfiguration.Build(AppContext.BaseDirectory, parsed), null);
        }
        catch (OptionsException ex)
        {
            await error.WriteLineAsync($"{commandLine.Tool}: {ex.Message}").ConfigureAwait(false);
            return new(commandLine, parsed, null, ExitCodes.BadOptions);
        }
    }

    /// <summary>Writes the reader's problems (exit 2) or, for <c>config show</c>, the effective configuration (exit 0); null: go on and start.</summary>
    public async Task<int?> FinishReadingAsync(OptionsReader reader, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        if (reader.Problems.Count > 0)
        {
            foreach (var problem in reader.Problems)
            {
                await error.WriteLineAsync($"{CommandLine.Tool}: {problem}").ConfigureAwait(false);
            }

            return ExitCodes.BadOptions;
        }

        if (Parsed.ConfigShow)
        {
            RamaConfiguration.WriteEffective(output, CommandLine.Tool, reader.Effective);
            return ExitCodes.Ok;
        }

        return null;
    }
}
