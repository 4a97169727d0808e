using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Rama.Admin.Logging;

/// <summary>
/// The console logger with batched writes: the same formatters and configuration as .NET's console logger
/// (<c>Logging:Console:FormatterName</c> simple, json or systemd, their <c>FormatterOptions</c>, the <c>Console</c>
/// provider's log levels, <c>LogToStandardErrorThreshold</c>, <c>QueueFullMode</c>), so every line is byte for byte
/// what <c>AddSimpleConsole</c> printed; only the writing differs. The console logger hands each line to its processor
/// thread, which writes it with one <c>write</c> syscall; here the line is formatted on the logging thread and appended
/// to a <see cref="ConsoleLineSink"/>, which writes what accumulated in one syscall. A node logging a line per request
/// (the TLS listener's fingerprint line) pays the formatting and a lock, not a syscall and a thread wake-up.
/// </summary>
[ProviderAlias("Console")]
internal sealed class BatchedConsoleLoggerProvider : ILoggerProvider, ISupportExternalScope
{
    private readonly Dictionary<string, ConsoleFormatter> _formatters;
    private readonly ConcurrentDictionary<string, BatchedConsoleLogger> _loggers = new();
    private readonly IDisposable? _optionsReload;
    private IExternalScopeProvider _scopes = new LoggerExternalScopeProvider();

    public BatchedConsoleLoggerProvider(IOptionsMonitor<ConsoleLoggerOptions> options, IEnumerable<ConsoleFormatter> formatters, ConsoleStreams? streams = null)
    {
        streams ??= new ConsoleStreams(Console.OpenStandardOutput(), Console.OpenStandardError());
        _formatters = new Dictionary<string, ConsoleFormatter>(StringComparer.OrdinalIgnoreCase);
        foreach (var formatter in formatters)
        {
            _formatters.TryAdd(formatter.Name, formatter);
        }

        var current = options.CurrentValue;
        Output = new ConsoleLineSink(streams.Output, current.QueueFullMode == ConsoleLoggerQueueFullMode.DropWrite);
        Errors = new ConsoleLineSink(streams.Errors, current.QueueFullMode == ConsoleLoggerQueueFullMode.DropWrite);
        Apply(current);
        _optionsReload = options.OnChange(Apply);
        // A process that ends without disposing the host (an unhandled exception, Environment.Exit) still prints what it
        // logged last: those lines say why it ended.
        AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
    }

    internal ConsoleLineSink Output { get; }

    internal ConsoleLineSink Errors { get; }

    internal ConsoleFormatter Formatter { get; private set; } = null!;

    internal LogLevel StandardErrorThreshold { get; private set; } = LogLevel.None;

    internal IExternalScopeProvider Scopes => _scopes;

    public ILogger CreateLogger(string categoryName) => _loggers.GetOrAdd(categoryName, static (name, self) => new BatchedConsoleLogger(name, self), this);

    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

    private void Apply(ConsoleLoggerOptions options)
    {
        // The console logger's rule: the named formatter, or the simple one when the name is unknown or absent.
        Formatter = options.FormatterName is { } name && _formatters.TryGetValue(name, out var named)
            ? named
            : _formatters.TryGetValue(ConsoleFormatterNames.Simple, out var simple) ? simple : _formatters.Values.First();
        StandardErrorThreshold = options.LogToStandardErrorThreshold;
    }

    private void OnProcessExit(object? sender, EventArgs e)
    {
        Output.Flush(TimeSpan.FromSeconds(2));
        Errors.Flush(TimeSpan.FromSeconds(2));
    }

    public void Dispose()
    {
        AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        _optionsReload?.Dispose();
        Output.Dispose();
        Errors.Dispose();
    }
}

/// <summary>Where the batched console logger writes: standard output and error (tests give it other streams).</summary>
internal sealed record ConsoleStreams(Stream Output, Stream Errors);

/// <summary>One category's logger: formats on the calling thread (a reused per-thread buffer) and appends the line.</summary>
internal sealed class BatchedConsoleLogger(string category, BatchedConsoleLoggerProvider provider) : ILogger
{
    [ThreadStatic]
    private static StringWriter? t_writer;

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => provider.Scopes.Push(state);

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel))
        {
            return;
        }

        var writer = t_writer ??= new StringWriter(new StringBuilder(256));
        var builder = writer.GetStringBuilder();
        builder.Clear();
        var entry = new LogEntry<TState>(logLevel, category, eventId, state, exception, formatter);
        provider.Formatter.Write(in entry, provider.Scopes, writer);
        if (builder.Length == 0)
        {
            return; // the formatter wrote nothing (no message and no exception)
        }

        var sink = logLevel >= provider.StandardErrorThreshold ? provider.Errors : provider.Output;
        ReadOnlyMemory<char> first = default;
        var chunks = 0;
        foreach (var chunk in builder.GetChunks())
        {
            first = chunk;
            if (++chunks > 1)
            {
                break;
            }
        }

        // One chunk once the per-thread builder has grown to its lines (Clear keeps the capacity in one chunk); a line
        // longer than that goes once as a string. Lines are never split.
        sink.Append(chunks == 1 ? first.Span : builder.ToString());

        if (builder.Capacity > 64 * 1024)
        {
            t_writer = null; // one huge line (a long exception) does not stay cached on the thread
        }
    }
}

/// <summary>Registration.</summary>
public static class BatchedConsoleLoggingExtensions
{
    /// <summary>
    /// The simple console formatter (single line, with <paramref name="timestampFormat"/>) on the batched console logger:
    /// what <c>AddSimpleConsole</c> prints, written in batches. Configuration under <c>Logging:Console</c> works as for
    /// the console logger (another formatter, its options, log levels).
    /// </summary>
    public static ILoggingBuilder AddRamaConsole(this ILoggingBuilder logging, string timestampFormat = "HH:mm:ss.fff ")
    {
        // Rama's defaults first, so that Logging:Console (FormatterName, FormatterOptions), bound by AddConsole after them,
        // overrides them (AddSimpleConsole would force the simple formatter over the configuration).
        logging.Services.Configure<ConsoleLoggerOptions>(o => o.FormatterName = ConsoleFormatterNames.Simple);
        logging.Services.Configure<SimpleConsoleFormatterOptions>(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = timestampFormat;
        });
        logging.AddConsole();
        // The console logger's formatters and option bindings stay; its provider (a processor thread, a write per line) goes.
        var descriptor = logging.Services.FirstOrDefault(d => d.ServiceType == typeof(ILoggerProvider) && d.ImplementationType == typeof(ConsoleLoggerProvider));
        if (descriptor is not null)
        {
            logging.Services.Remove(descriptor);
        }

        logging.Services.TryAddEnumerable(ServiceDescriptor.Singleton<ILoggerProvider, BatchedConsoleLoggerProvider>());
        return logging;
    }
}
