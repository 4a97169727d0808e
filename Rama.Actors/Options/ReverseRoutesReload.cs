using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Admin.Options;
using Rama.Proxy.Http.Routing;

namespace Rama.Actors.Options;

/// <summary>
/// Reloads the routes of routed reverse listeners when a configuration file changes (appsettings.json, the <c>--config</c>
/// file): the files are watched (a watcher, and a poll every 2 s for file systems without events), the merged
/// configuration is built again, each listener's Routes/Clusters/ForwardedHeaders are read and validated, and a valid
/// result is swapped into the listener's route table; connections and requests in flight are untouched. An invalid file
/// is refused with a logged problem and the table in use stays. Other keys (Bind, Kind, limits) need a restart.
/// </summary>
public sealed partial class ReverseRoutesReload : IDisposable
{
    private readonly Func<IConfiguration> _build;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, IReverseRouteTable> _tables = new(StringComparer.OrdinalIgnoreCase);
    private readonly List<FileSystemWatcher> _watchers = [];
    private readonly ITimer _debounced;
    private readonly ITimer _poll;
    private readonly string[] _files;
    private (long, DateTime)[] _seen;
    private bool _disposed;

    /// <param name="files">The configuration files to watch (missing ones are watched for their creation).</param>
    /// <param name="build">Builds the merged configuration again (the same layers as at start-up).</param>
    public ReverseRoutesReload(IEnumerable<string> files, Func<IConfiguration> build, ILogger? logger = null, TimeProvider? time = null, TimeSpan? pollInterval = null)
    {
        ArgumentNullException.ThrowIfNull(files);
        _build = build ?? throw new ArgumentNullException(nameof(build));
        _logger = logger ?? NullLogger.Instance;
        _files = [.. files.Select(Path.GetFullPath).Distinct(StringComparer.Ordinal)];
        _seen = [.. _files.Select(Stamp)];
        time ??= TimeProvider.System;
        _debounced = time.CreateTimer(_ => Reload(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        var poll = pollInterval ?? TimeSpan.FromSeconds(2);
        _poll = time.CreateTimer(_ => PollForChange(), null, poll, poll);
        foreach (var file in _files)
        {
            try
            {
                var watcher = new FileSystemWatcher(Path.GetDirectoryName(file)!, Path.GetFileName(file))
                {
                    NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime,
                };
                watcher.Changed += (_, _) => Schedule();
                watcher.Created += (_, _) => Schedule();
                watcher.Renamed += (_, _) => Schedule();
                watcher.EnableRaisingEvents = true;
                _watchers.Add(watcher);
            }
            catch (Exception ex) when (ex is IOException or ArgumentException or PlatformNotSupportedException)
            {
                LogWatchFailed(_logger, file, ex.Message); // the poll still sees changes
            }
        }
    }

    /// <summary>Reloads that swapped at least one table (tests wait on it).</summary>
    public int Reloads { get; private set; }

    /// <summary>Reloads refused for problems (tests wait on it).</summary>
    public int Refusals { get; private set; }

    /// <summary>Registers the route table of listener <paramref name="listener"/>.</summary>
    public void Add(string listener, IReverseRouteTable table)
    {
        lock (_gate)
        {
            _tables[listener] = table;
        }
    }

    private void Schedule()
    {
        lock (_gate)
        {
            if (!_disposed)
            {
                _debounced.Change(TimeSpan.FromMilliseconds(100), Timeout.InfiniteTimeSpan); // an editor's burst of events is one reload
            }
        }
    }

    private void PollForChange()
    {
        var now = _files.Select(Stamp).ToArray();
        if (!now.SequenceEqual(_seen))
        {
            Reload();
        }
    }

    private static (long, DateTime) Stamp(string file)
    {
        try
        {
            var info = new FileInfo(file);
            return info.Exists ? (info.Length, info.LastWriteTimeUtc) : (-1, default);
        }
        catch (IOException)
        {
            return (-1, default);
        }
    }

    /// <summary>Reads the files again and swaps every registered listener's routes that are valid.</summary>
    public void Reload()
    {
        lock (_gate)
        {
            if (_disposed || _tables.Count == 0)
            {
                return;
            }

            _seen = [.. _files.Select(Stamp)];
            IConfiguration configuration;
            try
            {
                configuration = _build();
            }
            catch (Exception ex) when (ex is OptionsException or InvalidDataException or FormatException or IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
            {
                Refusals++;
                LogRefused(_logger, "(all)", ex.Message);
                return;
            }

            var swapped = false;
            foreach (var (listener, table) in _tables)
            {
                var reader = new OptionsReader(configuration, NodeOptionDeclarations.All);
                var kind = configuration[$"{ListenerOptions.Section}:{listener}:Kind"];
                if (!string.Equals(kind, "reverse", StringComparison.OrdinalIgnoreCase) || !ReverseRouteOptions.IsRouted(configuration, listener))
                {
                    Refusals++;
                    LogRefused(_logger, listener, "the listener is no longer a routed reverse listener in the file; changing a listener's kind or removing it needs a restart");
                    continue;
                }

                reader.RefuseUnknownKeys($"{ListenerOptions.Section}:{listener}", [.. ListenerOptions.KeysOf(Rama.Actors.Options.ListenerKind.Reverse)], "a reverse listener");
                var routing = ReverseRouteOptions.Read(reader, listener);
                var problems = reader.Problems.Count > 0 ? reader.Problems : table.Apply(routing);
                if (problems.Count > 0)
                {
                    Refusals++;
                    LogRefused(_logger, listener, string.Join("; ", problems));
                    continue;
                }

                swapped = true;
                LogReloaded(_logger, listener, routing.Routes.Count, routing.Clusters.Count);
            }

            if (swapped)
            {
                Reloads++;
            }
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
        }

        foreach (var watcher in _watchers)
        {
            watcher.Dispose();
        }

        _debounced.Dispose();
        _poll.Dispose();
    }

    [LoggerMessage(EventId = 3090, Level = LogLevel.Information, Message = "Listener {Listener}: routes reloaded from the configuration files ({Routes} route(s), {Clusters} cluster(s))")]
    private static partial void LogReloaded(ILogger logger, string listener, int routes, int clusters);

    [LoggerMessage(EventId = 3091, Level = LogLevel.Warning, Message = "Listener {Listener}: changed configuration refused, the routes in use stay: {Problems}")]
    private static partial void LogRefused(ILogger logger, string listener, string problems);

    [LoggerMessage(EventId = 3092, Level = LogLevel.Warning, Message = "Cannot watch {File} for route changes ({Detail}); polling it instead")]
    private static partial void LogWatchFailed(ILogger logger, string file, string detail);
}
