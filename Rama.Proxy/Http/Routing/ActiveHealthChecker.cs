using System.Text;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Net;

namespace Rama.Proxy.Http.Routing;

/// <summary>
/// Active health checks of one cluster: a timer per destination (on the cluster's <see cref="TimeProvider"/>) probes
/// every Interval; a probe still running when the next is due is not doubled. Disposing stops the timers and waits for
/// the probes in flight, whose results are then dropped.
/// </summary>
internal sealed partial class ActiveHealthChecker : IAsyncDisposable
{
    private readonly ClusterState _cluster;
    private readonly Func<DestinationState, CancellationToken, ValueTask<bool>> _probe;
    private readonly ILogger _logger;
    private readonly List<ITimer> _timers = [];
    private readonly Dictionary<DestinationState, Task> _running = [];
    private readonly Lock _lock = new();
    private readonly CancellationTokenSource _stopping = new();
    private bool _disposed;

    /// <param name="probe">One probe of a destination: true when healthy. The token is cancelled at the probe's Timeout or on dispose.</param>
    public ActiveHealthChecker(ClusterState cluster, Func<DestinationState, CancellationToken, ValueTask<bool>> probe, ILogger logger)
    {
        _cluster = cluster;
        _probe = probe;
        _logger = logger;
        var interval = cluster.Options.HealthCheck.Active.Interval;
        foreach (var destination in cluster.Destinations)
        {
            _timers.Add(cluster.Time.CreateTimer(static s =>
            {
                var (self, d) = ((ActiveHealthChecker, DestinationState))s!;
                self.Start(d);
            }, (this, destination), interval, interval));
        }
    }

    /// <summary>Probes still running (tests wait on them).</summary>
    internal Task WhenIdleAsync()
    {
        lock (_lock)
        {
            return Task.WhenAll(_running.Values);
        }
    }

    private bool Start(DestinationState destination)
    {
        lock (_lock)
        {
            if (_disposed || _running.ContainsKey(destination))
            {
                return false;
            }

            _running[destination] = ProbeAsync(destination);
            return true;
        }
    }

    private async Task ProbeAsync(DestinationState destination)
    {
        await Task.Yield();
        var active = _cluster.Options.HealthCheck.Active;
        bool healthy;
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token))
        using (var timer = _cluster.Time.CreateTimer(static s => ((CancellationTokenSource)s!).Cancel(), timeout, active.Timeout, Timeout.InfiniteTimeSpan))
        {
            try
            {
                healthy = await _probe(destination, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // Whatever a probe throws is a failed probe: a faulted probe must not stop the destination's checks.
                LogProbeFailed(_logger, _cluster.Id, destination.Id, ex.Message);
                healthy = false;
            }
        }

        lock (_lock)
        {
            _running.Remove(destination);
            if (_disposed)
            {
                return;
            }
        }

        switch (destination.ReportProbe(healthy, active.UnhealthyThreshold, active.HealthyThreshold))
        {
            case false:
                LogUnhealthy(_logger, _cluster.Id, destination.Id, destination.Address.ToString(), active.UnhealthyThreshold);
                break;
            case true:
                LogHealthy(_logger, _cluster.Id, destination.Id, destination.Address.ToString(), active.HealthyThreshold);
                break;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Task[] running;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            running = [.. _running.Values];
        }

        foreach (var timer in _timers)
        {
            await timer.DisposeAsync().ConfigureAwait(false);
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(running).ConfigureAwait(false);
        _stopping.Dispose();
    }

    /// <summary>
    /// The probe of an h2c or https destination: GET <paramref name="path"/> through the forwarder, in the destination's protocol
    /// (its pooled HTTP/2 connections, TLS with ALPN), healthy on a 2xx head (YARP probes through its pooled client too).
    /// </summary>
    internal static async ValueTask<bool> ForwarderProbeAsync(ForwardProxyService forwarder, DestinationState destination, string path, CancellationToken cancellationToken)
    {
        var headers = new HttpHeaders();
        headers.Add("Host", destination.Probe.Target.ToString());
        headers.Add("User-Agent", "rama-health-check");
        var request = new HttpRequest("GET", path, RequestTargetForm.Origin, HttpProtocolVersion.Http11, headers);
        var (response, _, _, _) = await forwarder.TryForwardAsync(request, destination.Probe.Upstream, authority: null, path, cancellationToken).ConfigureAwait(false);
        if (response is null)
        {
            return false;
        }

        await response.Body.CompleteAsync().ConfigureAwait(false); // the body is not read: an HTTP/2 stream is reset, an HTTP/1.1 connection not reused
        return response.Status is >= 200 and < 300;
    }

    /// <summary>
    /// The HTTP probe: GET <paramref name="path"/> on a new connection (Connection: close), healthy on a 2xx head
    /// (YARP's rule). The body is not read.
    /// </summary>
    internal static async ValueTask<bool> HttpProbeAsync(ITcpConnector connector, HttpLimits limits, DestinationState destination, string path, CancellationToken cancellationToken)
    {
        var target = destination.Probe.Target;
        var dial = await connector.ConnectAsync(target, cancellationToken).ConfigureAwait(false);
        if (!dial.IsSuccess)
        {
            return false;
        }

        await using var connection = dial.Connection!;
        var head = Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: rama-health-check\r\nConnection: close\r\n\r\n");
        await connection.Output.WriteAsync(head, cancellationToken).ConfigureAwait(false);
        var response = await Http1ResponseReader.ReadFinalHeadAsync(connection.Input, limits, "GET", rejectSwitchingProtocols: true, cancellationToken).ConfigureAwait(false);
        return response is { Status: >= 200 and < 300 };
    }

    [LoggerMessage(EventId = 2080, Level = LogLevel.Warning, Message = "Cluster {Cluster}: destination {Destination} ({Address}) is unhealthy after {Count} failed probe(s); it takes no traffic")]
    private static partial void LogUnhealthy(ILogger logger, string cluster, string destination, string address, int count);

    [LoggerMessage(EventId = 2081, Level = LogLevel.Information, Message = "Cluster {Cluster}: destination {Destination} ({Address}) is healthy again after {Count} passed probe(s)")]
    private static partial void LogHealthy(ILogger logger, string cluster, string destination, string address, int count);

    [LoggerMessage(EventId = 2082, Level = LogLevel.Debug, Message = "Cluster {Cluster}: probe of {Destination} failed: {Detail}")]
    private static partial void LogProbeFailed(ILogger logger, string cluster, string destination, string detail);
}
