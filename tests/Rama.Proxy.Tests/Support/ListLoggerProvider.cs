using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Rama.Proxy.Tests.Support;

/// <summary>Collects every log entry in memory, so tests can assert what was (and was not) logged.</summary>
public sealed class ListLoggerProvider : ILoggerProvider
{
    /// <summary>The formatted messages, in order.</summary>
    public ConcurrentQueue<string> Lines { get; } = new();

    /// <summary>The entries with their level, event id and category.</summary>
    public ConcurrentQueue<LogEntry> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    public sealed record LogEntry(string Category, LogLevel Level, EventId EventId, string Message, Exception? Exception);

    private sealed class Logger(ListLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var message = formatter(state, exception);
            owner.Lines.Enqueue(message);
            owner.Entries.Enqueue(new LogEntry(category, logLevel, eventId, message, exception));
        }
    }
}
