using System.Threading.Channels;
using Akka;
using Akka.Actor;
using Akka.Streams;
using Akka.Streams.Dsl;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Observability;

namespace Rama.Actors.AccessLog;

/// <summary>The node's access log as its own stream: a sink that never blocks a connection, and what it wrote and dropped.</summary>
public interface IStreamedAccessLog : IAccessLog
{
    /// <summary>Lines written to the destination so far.</summary>
    long Written { get; }

    /// <summary>Lines dropped so far: the queue was full (the writer fell behind), the destination failed, or the log was closed.</summary>
    long Dropped { get; }
}

/// <summary>
/// The access log's stream (issue 11, item 6). A connection's <see cref="Write"/> is a non-blocking offer to a bounded
/// queue of <see cref="AccessLogOptions.BufferSize"/> entries: when the writer has fallen behind and the queue is full,
/// the entry is dropped and counted. An Akka.Streams graph takes the queue every <see cref="FlushInterval"/> (a tick
/// source, merged with one more tick at close), formats what it took into one buffer and writes it with one write and
/// one flush; while a write is pending, ticks are skipped (back-pressure) and the queue fills. The drop count is logged every
/// <see cref="DropReportInterval"/> when it grew, and when the log is closed.
/// </summary>
internal sealed partial class AccessLogStream : IStreamedAccessLog, IAsyncDisposable
{

    private readonly Channel<AccessLogEntry> _queue;
    private readonly Func<Stream> _open;
    private readonly bool _ownsDestination;
    private readonly AccessLogFormat _format;
    private readonly int _bufferSize;
    private readonly string _destinationName;
    private Stream? _destination;
    private AccessLogFormatter? _formatter;
    private ILogger _logger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
    private readonly TaskCompletionSource<NotUsed> _closing = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _completion;
    private ICancelable? _reporter;
    private long _accepted;
    private long _settled;
    private long _written;
    private long _dropped;
    private long _reported;
    private int _writeFailuresReported;
    private int _closed;

    /// <summary>A stream for <paramref name="options"/> (<c>stdout</c> or a file; not <c>off</c>), started by <see cref="Start"/>.</summary>
    public AccessLogStream(AccessLogOptions options)
        : this(options, OpenDestination(options), ownsDestination: !options.IsStdout)
    {
    }

    /// <summary>A stream to <paramref name="open"/>'s stream (tests: a destination that blocks).</summary>
    internal AccessLogStream(AccessLogOptions options, Func<Stream> open, bool ownsDestination = true)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Validate();
        if (problems.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", problems), nameof(options));
        }

        if (!options.Enabled)
        {
            throw new ArgumentException($"{AccessLogOptions.SectionName}:{nameof(AccessLogOptions.Destination)} is 'off': use {nameof(AccessLogs)}.{nameof(AccessLogs.Off)}", nameof(options));
        }

        _format = options.Format;
        _bufferSize = options.BufferSize;
        _destinationName = options.IsStdout ? AccessLogOptions.Stdout : options.Destination;
        _open = open;
        _ownsDestination = ownsDestination;
        // Wait mode: TryWrite answers false when full, so a drop is seen and counted (never waited for).
        _queue = Channel.CreateBounded<AccessLogEntry>(new BoundedChannelOptions(options.BufferSize)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
            SingleWriter = false,
            AllowSynchronousContinuations = false,
        });
    }

    /// <summary>Most lines per group (one write). Default 16384 (a few MiB of text): at 30k lines/s a 100 ms tick takes ~3000.</summary>
    internal int MaxBatch { get; init; } = 16 * 1024;

    /// <summary>How often the queue is taken and written (a line waits at most this long). Default 100 ms.</summary>
    internal TimeSpan FlushInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How often a grown drop count is logged. Default 5 s.</summary>
    internal TimeSpan DropReportInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Longest the close waits for the writer to drain the queue. Default 3 s (within the 5 s of its shutdown phase).</summary>
    internal TimeSpan CloseTimeout { get; init; } = TimeSpan.FromSeconds(3);

    public bool IsEnabled => Volatile.Read(ref _closed) == 0;

    public long Written => Interlocked.Read(ref _written);

    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Lines queued and not yet taken by the writer.</summary>
    internal int Queued => _queue.Reader.Count;

    public void Write(in AccessLogEntry entry)
    {
        if (_queue.Writer.TryWrite(entry))
        {
            Interlocked.Increment(ref _accepted);
        }
        else
        {
            Interlocked.Increment(ref _dropped);
            ProxyMetrics.AccessLogEntriesDropped(1);
        }
    }

    /// <summary>Opens the destination and materializes the stream with <paramref name="system"/>. Entries written before are queued.</summary>
    public void Start(ActorSystem system, ILogger logger)
    {
        Open(logger);
        Run(system);
    }

    /// <summary>Opens the destination (a file that cannot be opened fails here, at start-up) and the formatter.</summary>
    internal void Open(ILogger logger)
    {
        if (_formatter is not null)
        {
            throw new InvalidOperationException("the access log is already started");
        }

        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _destination = _open();
        _formatter = new AccessLogFormatter(_format);
    }

    /// <summary>
    /// Materializes the stream and starts the drop reports (after <see cref="Open"/>). Creating the materializer takes
    /// first-run JIT time and, when the actor system is already shutting down, can wait for its creation timeout, so the
    /// host runs this off its start path; a log closed before it ran is not started.
    /// </summary>
    internal void Run(ActorSystem system)
    {
        ArgumentNullException.ThrowIfNull(system);
        if (_formatter is null)
        {
            throw new InvalidOperationException("open the access log first");
        }

        if (Volatile.Read(ref _closed) != 0)
        {
            return;
        }

        var materializer = system.Materializer(namePrefix: "rama-access-log");
        // The queue is read on a tick (and once more when closing), never woken per entry: a reader woken by each
        // offer cost a thread-pool hop and an actor message per request, about a quarter of a node's throughput.
        var completion = Source.Tick(FlushInterval, FlushInterval, NotUsed.Instance).MapMaterializedValue(_ => NotUsed.Instance)
            .Merge(Source.FromTask(_closing.Task))
            .Select(_ => Drain())
            .TakeWhile(group => !group.Last, inclusive: true)
            .Where(group => group.Lines > 0)
            .SelectAsync(1, WriteGroupAsync)
            .RunWith(Sink.Ignore<int>(), materializer);
        Volatile.Write(ref _completion, completion);
        _reporter = system.Scheduler.Advanced.ScheduleRepeatedlyCancelable(DropReportInterval, DropReportInterval, ReportDrops);
        LogStarted(_logger, _destinationName, _format, _bufferSize);
    }

    /// <summary>
    /// Closes the queue, waits (up to <see cref="CloseTimeout"/>) for the writer to write what is queued, flushes the
    /// destination and logs the counts. Entries written after this are dropped and counted.
    /// </summary>
    public async Task CloseAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        _queue.Writer.TryComplete();
        _closing.TrySetResult(NotUsed.Instance);
        _reporter?.Cancel();
        if (Volatile.Read(ref _completion) is { } completion)
        {
            var finished = await Task.WhenAny(completion, Task.Delay(CloseTimeout)).ConfigureAwait(false);
            if (finished != completion)
            {
                // The writer is stuck (a destination that does not take writes): every line taken and not yet written is lost.
                var lost = Interlocked.Read(ref _accepted) - Interlocked.Read(ref _settled);
                Interlocked.Add(ref _dropped, lost);
                ProxyMetrics.AccessLogEntriesDropped(lost);
                LogCloseTimedOut(_logger, _destinationName, CloseTimeout.TotalSeconds);
            }
            else if (completion.IsFaulted)
            {
                LogStreamFailed(_logger, completion.Exception!.GetBaseException(), _destinationName);
            }
        }

        if (_ownsDestination && _destination is { } destination && _completion is { IsCompleted: true })
        {
            try
            {
                await destination.DisposeAsync().ConfigureAwait(false);
            }
            catch (IOException ex)
            {
                LogWriteFailed(_logger, ex, _destinationName);
            }
        }

        _formatter?.Dispose();
        LogClosed(_logger, _destinationName, Written, Dropped);
    }

    /// <summary>Same as <see cref="CloseAsync"/>.</summary>
    public async ValueTask DisposeAsync() => await CloseAsync().ConfigureAwait(false);

    /// <summary>One formatted group: what the queue held (at most <see cref="MaxBatch"/> lines), and whether the queue is finished.</summary>
    private readonly record struct Group(byte[] Bytes, int Length, int Lines, bool Last);

    /// <summary>Takes what is queued (at most <see cref="MaxBatch"/> lines) and formats it, on the stream.</summary>
    private Group Drain()
    {
        var formatter = _formatter!;
        formatter.Clear();
        var lines = 0;
        while (lines < MaxBatch && _queue.Reader.TryRead(out var entry))
        {
            formatter.Append(entry);
            lines++;
        }

        // A pooled copy (the formatter goes on with the next group while this one is written): no large allocation per tick.
        var written = formatter.Written;
        var bytes = lines == 0 ? [] : System.Buffers.ArrayPool<byte>.Shared.Rent(written.Length);
        written.CopyTo(bytes);
        return new Group(bytes, written.Length, lines, _queue.Reader.Completion.IsCompleted);
    }

    private async Task<int> WriteGroupAsync(Group group)
    {
        var lines = group.Lines;
        try
        {
            await _destination!.WriteAsync(group.Bytes.AsMemory(0, group.Length)).ConfigureAwait(false);
            await _destination.FlushAsync().ConfigureAwait(false);
            Interlocked.Add(ref _written, lines);
            Interlocked.Add(ref _settled, lines);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or NotSupportedException or UnauthorizedAccessException)
        {
            // A destination that fails (disk full, closed pipe) loses this group, counted; the stream goes on.
            Interlocked.Add(ref _dropped, lines);
            ProxyMetrics.AccessLogEntriesDropped(lines);
            Interlocked.Add(ref _settled, lines);
            if (Interlocked.Exchange(ref _writeFailuresReported, 1) == 0)
            {
                LogWriteFailed(_logger, ex, _destinationName);
            }
        }

        System.Buffers.ArrayPool<byte>.Shared.Return(group.Bytes);
        return lines;
    }

    private void ReportDrops()
    {
        var dropped = Dropped;
        var before = Interlocked.Exchange(ref _reported, dropped);
        if (dropped > before)
        {
            LogDropped(_logger, dropped - before, dropped, _destinationName, _bufferSize);
        }

        Volatile.Write(ref _writeFailuresReported, 0);
    }

    private static Func<Stream> OpenDestination(AccessLogOptions options)
    {
        if (options.IsStdout)
        {
            return Console.OpenStandardOutput;
        }

        var path = Path.GetFullPath(options.Destination);
        return () =>
        {
            if (Path.GetDirectoryName(path) is { Length: > 0 } directory)
            {
                Directory.CreateDirectory(directory);
            }

            return new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0, FileOptions.Asynchronous);
        };
    }

    [LoggerMessage(EventId = 5100, Level = LogLevel.Debug, Message = "Access log to {Destination} ({Format}, queue of {BufferSize} lines)")]
    private static partial void LogStarted(ILogger logger, string destination, AccessLogFormat format, int bufferSize);

    [LoggerMessage(EventId = 5101, Level = LogLevel.Warning, Message = "Access log to {Destination}: {Dropped} lines dropped since the last report ({Total} in all): the writer fell behind a queue of {BufferSize} lines")]
    private static partial void LogDropped(ILogger logger, long dropped, long total, string destination, int bufferSize);

    [LoggerMessage(EventId = 5102, Level = LogLevel.Information, Message = "Access log to {Destination} closed: {Written} lines written, {Dropped} dropped")]
    private static partial void LogClosed(ILogger logger, string destination, long written, long dropped);

    [LoggerMessage(EventId = 5103, Level = LogLevel.Warning, Message = "Access log to {Destination}: a write failed; its lines are dropped")]
    private static partial void LogWriteFailed(ILogger logger, Exception exception, string destination);

    [LoggerMessage(EventId = 5104, Level = LogLevel.Warning, Message = "Access log to {Destination}: the writer did not drain the queue within {Seconds} s; the rest is dropped")]
    private static partial void LogCloseTimedOut(ILogger logger, string destination, double seconds);

    [LoggerMessage(EventId = 5105, Level = LogLevel.Error, Message = "Access log to {Destination}: the stream failed")]
    private static partial void LogStreamFailed(ILogger logger, Exception exception, string destination);
}
