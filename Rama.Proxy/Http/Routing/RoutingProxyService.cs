using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Net;

namespace Rama.Proxy.Http.Routing;

/// <summary>
/// A reverse proxy with routes (YARP's model): the request's host, path, method and headers choose a route, the route's
/// cluster chooses a destination by its load-balancing policy among the healthy ones, and the request is forwarded with
/// the forward proxy's forwarder. A failed dial, or an origin that closed before answering an idempotent request whose
/// body was not sent, is retried on another destination (bounded by the cluster's MaxAttempts). No route: 404; no
/// healthy destination: 503; the route's Timeout passed before the response head: 504. The route table is swapped
/// whole by <see cref="Apply"/> (a reload); a request in flight keeps the table it started with.
/// </summary>
internal sealed partial class RoutingProxyService : Core.IService<HttpRequest, HttpResponse>, IReverseRouteTable, IAsyncDisposable
{
    private static readonly byte[] s_allow = "Allow"u8.ToArray();
    private readonly ForwardProxyService _forwarder;
    private readonly Func<DestinationState, string, CancellationToken, ValueTask<bool>> _probe;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Lock _applyLock = new();
    private volatile Generation _current;

    private sealed record Generation(RouteTable Table, ActiveHealthChecker[] Checkers);

    /// <param name="probe">The active health probe (destination, path): the HTTP/1.1 GET over <paramref name="connector"/> (h2c and https destinations: through the forwarder) unless a test gives its own.</param>
    public RoutingProxyService(ForwardProxyService forwarder, ReverseRoutingOptions options, ITcpConnector connector, HttpLimits limits, ILogger logger, TimeProvider time,
        Func<DestinationState, string, CancellationToken, ValueTask<bool>>? probe = null)
    {
        _forwarder = forwarder;
        _logger = logger;
        _time = time;
        _probe = probe ?? ((destination, path, token) => destination.Probe.Protocol == OriginProtocol.Http1
            ? ActiveHealthChecker.HttpProbeAsync(connector, limits, destination, path, token)
            : ActiveHealthChecker.ForwarderProbeAsync(forwarder, destination, path, token));
        var problems = options.Validate();
        if (problems.Count > 0)
        {
            throw new ArgumentException("invalid routes: " + string.Join("; ", problems), nameof(options));
        }

        _current = Build(options, previous: null);
    }

    /// <summary>The table requests are matched against now.</summary>
    internal RouteTable Table => _current.Table;

    /// <summary>The active health checkers of the current table (tests wait on their probes).</summary>
    internal IReadOnlyList<ActiveHealthChecker> Checkers => _current.Checkers;

    /// <summary>
    /// Swaps in <paramref name="options"/> when valid: destinations that keep their cluster, id and address keep their
    /// health and in-flight counts; the old table's health checks stop. Invalid: nothing changes and the problems are returned.
    /// </summary>
    public IReadOnlyList<string> Apply(ReverseRoutingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Validate();
        if (problems.Count > 0)
        {
            LogReloadRefused(_logger, string.Join("; ", problems));
            return problems;
        }

        Generation old;
        lock (_applyLock)
        {
            old = _current;
            _current = Build(options, old.Table);
        }

        LogReloaded(_logger, options.Routes.Count, options.Clusters.Count);
        _ = StopAsync(old);
        return [];
    }

    private static async Task StopAsync(Generation generation)
    {
        foreach (var checker in generation.Checkers)
        {
            await checker.DisposeAsync().ConfigureAwait(false);
        }
    }

    private Generation Build(ReverseRoutingOptions options, RouteTable? previous)
    {
        var clusters = new Dictionary<string, ClusterState>(StringComparer.OrdinalIgnoreCase);
        var checkers = new List<ActiveHealthChecker>();
        foreach (var cluster in options.Clusters)
        {
            var destinations = new List<DestinationState>();
            foreach (var destination in cluster.Destinations)
            {
                // Validated above: both parse.
                _ = DestinationAddress.TryParse(destination.Address, out var address, out _);
                var probe = address;
                if (destination.Health is { } health)
                {
                    _ = DestinationAddress.TryParse(health, out probe, out _);
                }

                var kept = previous is not null && previous.Clusters.TryGetValue(cluster.ClusterId, out var old)
                    ? old.Destinations.FirstOrDefault(d => d.Id == destination.DestinationId && d.Address == address && d.Probe == probe)
                    : null;
                destinations.Add(kept ?? new DestinationState(destination.DestinationId, address, probe));
            }

            var state = new ClusterState(cluster, destinations, _time);
            clusters.Add(cluster.ClusterId, state);
            if (cluster.HealthCheck.Active.Enabled)
            {
                var path = cluster.HealthCheck.Active.Path;
                checkers.Add(new ActiveHealthChecker(state, (d, token) => _probe(d, path, token), _logger));
            }
        }

        return new Generation(new RouteTable(options, clusters), [.. checkers]);
    }

    public ValueTask<HttpResponse> ServeAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        string pathAndQuery;
        string? targetAuthority = null;
        switch (request.TargetForm)
        {
            case RequestTargetForm.Origin:
                pathAndQuery = request.Target;
                break;
            case RequestTargetForm.Asterisk:
                pathAndQuery = "*";
                break;
            case RequestTargetForm.Absolute when ForwardProxyService.TrySplitAbsoluteTarget(request.Target, out _, out var authority, out var path):
                pathAndQuery = path; // RFC 9112 §3.2.2: accepted; the origin gets origin-form
                targetAuthority = authority; // ... and its authority, not Host, names the host (§3.2.2: Host is ignored)
                break;
            case RequestTargetForm.Authority:
                var refused = HttpResponse.Text(405, "CONNECT is not served by a reverse proxy");
                refused.Headers.Add(s_allow, "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"u8.ToArray());
                return ValueTask.FromResult(refused);
            default:
                return ValueTask.FromResult(_forwarder.Fail(request, ForwardError.BadTarget, "unsupported request target"));
        }

        var table = _current.Table; // one table for the whole request, whatever a reload does meanwhile
        var hostText = targetAuthority ?? request.Headers.GetText("Host") ?? "";
        var (host, port) = SplitHost(hostText);
        var query = pathAndQuery.IndexOf('?', StringComparison.Ordinal);
        var pathOnly = query >= 0 ? pathAndQuery.AsSpan(0, query) : pathAndQuery.AsSpan();
        var route = table.Match(request, host, port, pathOnly);
        if (route is null)
        {
            LogNoRoute(_logger, request.Method, hostText, request.Target);
            return ValueTask.FromResult(HttpResponse.Text(404, $"Not Found: no route matches {request.Method} {hostText}{pathOnly}"));
        }

        pathAndQuery = RewritePath(route.Options.Transforms, pathAndQuery);
        var forwarded = table.Options.ForwardedHeaders;
        ForwardedHeaders.Apply(forwarded, request.Headers, request.Connection?.RemoteEndPoint?.Address, "http", hostText.Length == 0 ? null : hostText);
        ApplyRequestTransforms(route.Options.Transforms, request.Headers);
        return ForwardToClusterAsync(request, route, pathAndQuery, cancellationToken);
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<HttpResponse> ForwardToClusterAsync(HttpRequest request, CompiledRoute route, string pathAndQuery, CancellationToken cancellationToken)
    {
        var cluster = route.Cluster;
        CancellationTokenSource? routeTimeout = null;
        ITimer? timer = null;
        var token = cancellationToken;
        if (route.Options.Timeout is { } timeout)
        {
            routeTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timer = _time.CreateTimer(static s => ((CancellationTokenSource)s!).Cancel(), routeTimeout, timeout, Timeout.InfiniteTimeSpan);
            token = routeTimeout.Token;
        }

        var handedOver = false;
        List<DestinationState>? tried = null;
        var lastError = ForwardError.ConnectFailed;
        var lastDetail = "";
        try
        {
            var retryable = HttpMethods.IsIdempotent(request.Method);
            for (var attempt = 1; ; attempt++)
            {
                var destination = cluster.Pick(request, tried);
                if (destination is null)
                {
                    if (tried is null)
                    {
                        LogNoHealthyDestination(_logger, cluster.Id, request.Method, request.Target);
                        var unavailable = HttpResponse.Text(503, $"Service Unavailable: no healthy destination in cluster {cluster.Id}");
                        unavailable.Headers.Add("Retry-After", "1");
                        return unavailable;
                    }

                    return _forwarder.Fail(request, lastError, $"every destination of cluster {cluster.Id} tried failed; last: {lastDetail}");
                }

                destination.RequestStarted();
                (HttpResponse? Response, ForwardError Error, string Detail, bool BodyBytesSent) outcome;
                try
                {
                    outcome = await _forwarder.TryForwardAsync(request, destination.Address.Upstream, authority: null, pathAndQuery, token).ConfigureAwait(false);
                }
                catch
                {
                    destination.RequestEnded();
                    throw;
                }

                if (outcome.Response is { } response)
                {
                    ApplyResponseTransforms(route.Options.Transforms, response.Headers);
                    if (timer is not null)
                    {
                        await timer.DisposeAsync().ConfigureAwait(false); // the Timeout bounds the wait for the head only
                    }

                    response.Body = new CompletionReader(response.Body, destination, routeTimeout);
                    handedOver = true;
                    return response;
                }

                destination.RequestEnded();
                if (routeTimeout?.IsCancellationRequested == true && !cancellationToken.IsCancellationRequested)
                {
                    return RouteTimedOut(request, route);
                }

                var connectFailed = outcome.Error is ForwardError.ConnectFailed or ForwardError.ConnectTimedOut;
                if ((connectFailed || outcome.Error is ForwardError.UpstreamClosed or ForwardError.UpstreamTimedOut) && !cancellationToken.IsCancellationRequested
                    && cluster.ReportFailure(destination))
                {
                    LogEjected(_logger, cluster.Id, destination.Id, destination.Address.ToString(), outcome.Error, cluster.Options.HealthCheck.Passive.ReactivationPeriod);
                }

                // RFC 9110 §9.2.2: nothing reached an origin after a failed dial; after a close before the answer only an
                // idempotent request without a body byte sent may be repeated.
                var canRetry = connectFailed || (outcome.Error == ForwardError.UpstreamClosed && retryable && !outcome.BodyBytesSent);
                if (!canRetry || attempt >= cluster.MaxAttempts || cancellationToken.IsCancellationRequested)
                {
                    return _forwarder.Fail(request, outcome.Error, $"{destination.Address}: {outcome.Detail}");
                }

                LogRetryElsewhere(_logger, request.Method, request.Target, cluster.Id, destination.Id, outcome.Error);
                (lastError, lastDetail) = (outcome.Error, $"{destination.Address}: {outcome.Detail}");
                (tried ??= []).Add(destination);
            }
        }
        catch (OperationCanceledException) when (routeTimeout?.IsCancellationRequested == true && !cancellationToken.IsCancellationRequested)
        {
            return RouteTimedOut(request, route);
        }
        finally
        {
            if (!handedOver)
            {
                if (timer is not null)
                {
                    await timer.DisposeAsync().ConfigureAwait(false);
                }

                routeTimeout?.Dispose();
            }
        }
    }

    private HttpResponse RouteTimedOut(HttpRequest request, CompiledRoute route)
    {
        LogRouteTimeout(_logger, request.Method, request.Target, route.Id, route.Options.Timeout!.Value);
        return HttpResponse.Text(504, $"Gateway Timeout: route {route.Id} had no response within {route.Options.Timeout.Value.TotalSeconds:0.###} s");
    }

    internal static (string Host, int? Port) SplitHost(string hostText)
    {
        var text = hostText.Trim();
        if (text.StartsWith('['))
        {
            var end = text.IndexOf(']', StringComparison.Ordinal);
            if (end < 0)
            {
                return (text.ToLowerInvariant(), null);
            }

            int? bracketPort = end + 2 < text.Length && text[end + 1] == ':' && int.TryParse(text.AsSpan(end + 2), System.Globalization.CultureInfo.InvariantCulture, out var bp) ? bp : null;
            return (text[..(end + 1)].ToLowerInvariant(), bracketPort);
        }

        var colon = text.LastIndexOf(':');
        if (colon >= 0 && int.TryParse(text.AsSpan(colon + 1), System.Globalization.CultureInfo.InvariantCulture, out var port))
        {
            return (text[..colon].ToLowerInvariant(), port);
        }

        return (text.ToLowerInvariant(), null);
    }

    internal static string RewritePath(IReadOnlyList<RouteTransform> transforms, string pathAndQuery)
    {
        foreach (var transform in transforms)
        {
            if (transform.Kind is not (RouteTransformKind.PathRemovePrefix or RouteTransformKind.PathPrefix))
            {
                continue;
            }

            var query = pathAndQuery.IndexOf('?', StringComparison.Ordinal);
            var path = query >= 0 ? pathAndQuery[..query] : pathAndQuery;
            var rest = query >= 0 ? pathAndQuery[query..] : "";
            var prefix = transform.Value.TrimEnd('/');
            if (transform.Kind == RouteTransformKind.PathRemovePrefix)
            {
                // YARP: removed only when the path starts with it on a segment boundary; "/api" of "/api" leaves "/".
                if (prefix.Length > 0 && RoutePath.Matches(prefix, path))
                {
                    path = path[prefix.Length..];
                    path = path.Length == 0 ? "/" : path;
                }
            }
            else if (prefix.Length > 0)
            {
                path = path == "/" ? prefix + "/" : prefix + path;
            }

            pathAndQuery = path + rest;
        }

        return pathAndQuery;
    }

    internal static void ApplyRequestTransforms(IReadOnlyList<RouteTransform> transforms, HttpHeaders headers)
    {
        foreach (var transform in transforms)
        {
            switch (transform.Kind)
            {
                case RouteTransformKind.RequestHeaderSet:
                    headers.Remove(Encoding.Latin1.GetBytes(transform.Name));
                    headers.Add(transform.Name, transform.Value);
                    break;
                case RouteTransformKind.RequestHeaderAppend:
                    headers.Add(transform.Name, transform.Value);
                    break;
                case RouteTransformKind.RequestHeaderRemove:
                    headers.Remove(Encoding.Latin1.GetBytes(transform.Name));
                    break;
            }
        }
    }

    internal static void ApplyResponseTransforms(IReadOnlyList<RouteTransform> transforms, HttpHeaders headers)
    {
        foreach (var transform in transforms)
        {
            switch (transform.Kind)
            {
                case RouteTransformKind.ResponseHeaderSet:
                    headers.Remove(Encoding.Latin1.GetBytes(transform.Name));
                    headers.Add(transform.Name, transform.Value);
                    break;
                case RouteTransformKind.ResponseHeaderAppend:
                    headers.Add(transform.Name, transform.Value);
                    break;
                case RouteTransformKind.ResponseHeaderRemove:
                    headers.Remove(Encoding.Latin1.GetBytes(transform.Name));
                    break;
            }
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync(_current).ConfigureAwait(false);

    /// <summary>The response body as the origin sends it; its completion ends the destination's request count and the route's timeout source.</summary>
    private sealed class CompletionReader(PipeReader inner, DestinationState destination, CancellationTokenSource? routeTimeout) : PipeReader
    {
        private int _completed;

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => inner.ReadAsync(cancellationToken);

        public override bool TryRead(out ReadResult result) => inner.TryRead(out result);

        public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => inner.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null)
        {
            inner.Complete(exception);
            Done();
        }

        public override async ValueTask CompleteAsync(Exception? exception = null)
        {
            await inner.CompleteAsync(exception).ConfigureAwait(false);
            Done();
        }

        private void Done()
        {
            if (Interlocked.Exchange(ref _completed, 1) == 0)
            {
                destination.RequestEnded();
                routeTimeout?.Dispose();
            }
        }
    }

    [LoggerMessage(EventId = 2083, Level = LogLevel.Debug, Message = "{Method} {Host}{Target}: no route matches -> 404")]
    private static partial void LogNoRoute(ILogger logger, string method, string host, string target);

    [LoggerMessage(EventId = 2084, Level = LogLevel.Warning, Message = "Cluster {Cluster}: no healthy destination for {Method} {Target} -> 503")]
    private static partial void LogNoHealthyDestination(ILogger logger, string cluster, string method, string target);

    [LoggerMessage(EventId = 2085, Level = LogLevel.Warning, Message = "Cluster {Cluster}: destination {Destination} ({Address}) ejected after {Error} for {Period}")]
    private static partial void LogEjected(ILogger logger, string cluster, string destination, string address, ForwardError error, TimeSpan period);

    [LoggerMessage(EventId = 2086, Level = LogLevel.Debug, Message = "{Method} {Target}: {Error} on {Cluster}/{Destination}; retrying on another destination")]
    private static partial void LogRetryElsewhere(ILogger logger, string method, string target, string cluster, string destination, ForwardError error);

    [LoggerMessage(EventId = 2087, Level = LogLevel.Debug, Message = "{Method} {Target}: route {Route} timed out after {Timeout} -> 504")]
    private static partial void LogRouteTimeout(ILogger logger, string method, string target, string route, TimeSpan timeout);

    [LoggerMessage(EventId = 2088, Level = LogLevel.Information, Message = "Routes reloaded: {Routes} route(s), {Clusters} cluster(s)")]
    private static partial void LogReloaded(ILogger logger, int routes, int clusters);

    [LoggerMessage(EventId = 2089, Level = LogLevel.Warning, Message = "Routes not reloaded, the previous table stays: {Problems}")]
    private static partial void LogReloadRefused(ILogger logger, string problems);
}
