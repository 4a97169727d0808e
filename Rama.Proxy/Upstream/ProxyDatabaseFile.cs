using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Rama.Proxy.Upstream;

/// <summary>
/// A proxy database loaded from a CSV or JSON file and reloaded when the file changes (an inotify
/// watch on its directory, so an atomic rename-over is seen, plus a poll as a safety net). A good file
/// replaces the database atomically; a bad one keeps the old database and logs every error with its
/// line and field. Unchanged content (same bytes) is not reloaded.
/// </summary>
public sealed partial class ProxyDatabaseFile : IDisposable
{
    private readonly string _path;
    private readonly ILogger _logger;
    private readonly TimeSpan _debounce;
    private readonly object _gate = new();
    private readonly FileSystemWatcher? _watcher;
    private readonly ITimer _poll;
    private readonly ITimer _debounced;
    private string _contentHash;
    private (long Length, DateTime Written) _seen;
    private bool _disposed;

    private ProxyDatabaseFile(string path, IProxyDatabase initial, string contentHash, ILogger? logger, TimeSpan pollInterval, TimeProvider? time)
    {
        _path = Path.GetFullPath(path);
        _logger = logger ?? NullLogger.Instance;
        _debounce = TimeSpan.FromMilliseconds(100);
        _contentHash = contentHash;
        _seen = Stamp();
        Database = new ReloadableProxyDatabase(initial);
        time ??= TimeProvider.System;
        _debounced = time.CreateTimer(_ => Reload(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _poll = time.CreateTimer(_ => PollForChange(), null, pollInterval, pollInterval);
        try
        {
            _watcher = new FileSystemWatcher(Path.GetDirectoryName(_path)!, Path.GetFileName(_path))
            {
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime,
            };
            _watcher.Changed += (_, _) => Schedule();
            _watcher.Created += (_, _) => Schedule();
            _watcher.Renamed += (_, _) => Schedule();
            _watcher.EnableRaisingEvents = true;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or PlatformNotSupportedException)
        {
            LogWatchFailed(_logger, _path, ex.Message); // the poll still catches changes
        }
    }

    /// <summary>The current database; swapped atomically on each good reload.</summary>
    public ReloadableProxyDatabase Database { get; }

    /// <summary>The watched file (full path).</summary>
    public string FilePath => _path;

    /// <summary>Number of successful reloads (for tests and metrics).</summary>
    public int Reloads { get; private set; }

    /// <summary>The errors of the last rejected file, or null when the last load was good.</summary>
    public ProxyDatabaseException? LastError { get; private set; }

    /// <summary>Loads <paramref name="path"/> (throws <see cref="ProxyDatabaseException"/> or IOException when it cannot) and watches it.</summary>
    public static ProxyDatabaseFile Open(string path, ILogger? logger = null, TimeSpan? pollInterval = null, TimeProvider? time = null)
    {
        var bytes = File.ReadAllBytes(path);
        var database = ProxyDatabase.Create(ProxyDatabaseLoader.Parse(System.Text.Encoding.UTF8.GetString(bytes), Path.GetFileName(path)));
        return new ProxyDatabaseFile(path, database, Hash(bytes), logger, pollInterval ?? TimeSpan.FromSeconds(2), time);
    }

    private void Schedule()
    {
        lock (_gate)
        {
            if (!_disposed)
            {
                _debounced.Change(_debounce, Timeout.InfiniteTimeSpan); // a burst of events is one reload
            }
        }
    }

    private void PollForChange()
    {
        if (Stamp() != _seen)
        {
            Reload();
        }
    }

    private (long, DateTime) Stamp()
    {
        try
        {
            var info = new FileInfo(_path);
            return info.Exists ? (info.Length, info.LastWriteTimeUtc) : (-1, default);
        }
        catch (IOException)
        {
            return (-1, default);
        }
    }

    /// <summary>Reloads now (also called by the watcher and the poll).</summary>
    public void Reload()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _seen = Stamp();
            byte[] bytes;
            try
            {
                bytes = File.ReadAllBytes(_path);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                LogReadFailed(_logger, _path, ex.Message, Database.Version);
                return;
            }

            var hash = Hash(bytes);
            if (hash == _contentHash)
            {
                return;
            }

            _contentHash = hash;
            try
            {
                var previous = Database.Version;
                var next = ProxyDatabase.Create(ProxyDatabaseLoader.Parse(System.Text.Encoding.UTF8.GetString(bytes), Path.GetFileName(_path)));
                Database.Replace(next);
                LastError = null;
                Reloads++;
                LogReloaded(_logger, _path, next.Count, next.Version, previous);
            }
            catch (ProxyDatabaseException ex)
            {
                LastError = ex;
                LogRejected(_logger, _path, Database.Version, ex.Message);
            }
        }
    }

    private static string Hash(byte[] bytes) => Convert.ToHexString(SHA256.HashData(bytes));

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
        }

        _watcher?.Dispose();
        _poll.Dispose();
        _debounced.Dispose();
    }

    [LoggerMessage(EventId = 4100, Level = LogLevel.Information, Message = "Proxy database {Path} reloaded: {Count} records, version {Version} (was {Previous})")]
    private static partial void LogReloaded(ILogger logger, string path, int count, string version, string previous);

    [LoggerMessage(EventId = 4101, Level = LogLevel.Error, Message = "Proxy database {Path} rejected, keeping version {Version}: {Errors}")]
    private static partial void LogRejected(ILogger logger, string path, string version, string errors);

    [LoggerMessage(EventId = 4102, Level = LogLevel.Warning, Message = "Proxy database {Path} could not be read, keeping version {Version}: {Detail}")]
    private static partial void LogReadFailed(ILogger logger, string path, string detail, string version);

    [LoggerMessage(EventId = 4103, Level = LogLevel.Warning, Message = "Cannot watch {Path} ({Detail}); polling only")]
    private static partial void LogWatchFailed(ILogger logger, string path, string detail);
}
