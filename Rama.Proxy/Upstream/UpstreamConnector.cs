using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Limits;
using Rama.Proxy.Metrics;
using Rama.Proxy.Net.Destinations;
using Rama.Proxy.Net;
using Rama.Proxy.Socks5;

namespace Rama.Proxy.Upstream;

/// <summary>
/// An <see cref="ITcpConnector"/> that reaches the target through an upstream proxy chosen for the
/// request (<see cref="UpstreamRouter"/>), or directly when the route says so. Candidates are tried in
/// order (healthy first, see <see cref="UpstreamFailureCache"/>), at most
/// <see cref="UpstreamRoutingOptions.MaxAttempts"/>; a transport failure of an upstream (refused,
/// timed out, handshake failed, credentials refused) backs it off and moves to the next, while an
/// answer about the target (refused, unreachable) is final. The upstream used goes in the extensions
/// as <see cref="SelectedUpstream"/>.
/// Destination rules (<see cref="DestinationPolicy"/>): a direct route leaves them to the direct connector (it checks every
/// resolved address); a chained target is checked by name, port and user (and by address when it is an address literal,
/// or when we resolve it for a socks5 upstream) before any upstream is dialled, since the upstream resolves it. The
/// upstream proxies themselves are the operator's: they are dialled without the rules.
/// </summary>
public sealed partial class UpstreamConnector : ITcpConnector
{
    private readonly ITcpConnector _direct;
    private readonly UpstreamRouter _router;
    private readonly UpstreamFailureCache _failures;
    private readonly IDnsResolver _dns;
    private readonly TimeSpan _handshakeTimeout;
    private readonly UpstreamTls _tls;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    private readonly IConcurrencyLimiter? _limiter;
    private readonly LimitOptions _limits;
    private readonly ITcpConnector _upstreams;
    private readonly DestinationPolicy? _destinations;

    /// <param name="direct">Dials targets (direct routes) and upstream endpoints.</param>
    /// <param name="handshakeTimeout">Longest an upstream handshake (TLS, CONNECT, SOCKS5) may take after the TCP connect.</param>
    /// <param name="upstreams">Dials the upstream proxies (operator-configured: no destination rules). Default: <paramref name="direct"/>.</param>
    /// <param name="destinations">The destination rules chained targets are checked against before an upstream is dialled; null: none.</param>
    /// <param name="limiter">Leases for upstreams with a connection or rate limit (a record's own, else <paramref name="limits"/>' defaults); null: no upstream limits.</param>
    public UpstreamConnector(ITcpConnector direct, UpstreamRouter router, UpstreamFailureCache failures, IDnsResolver? dns = null,
        TimeSpan? handshakeTimeout = null, TimeProvider? time = null, ILogger<UpstreamConnector>? logger = null,
        IConcurrencyLimiter? limiter = null, LimitOptions? limits = null, ITcpConnector? upstreams = null, DestinationPolicy? destinations = null)
    {
        _upstreams = upstreams ?? direct;
        _destinations = destinations is { IsOpen: false } ? destinations : null;
        _limiter = limiter;
        _limits = limits ?? new LimitOptions();
        _direct = direct;
        _router = router;
        _failures = failures;
        _dns = dns ?? new DnsResolver();
        _handshakeTimeout = handshakeTimeout ?? TimeSpan.FromSeconds(10);
        _time = time ?? TimeProvider.System;
        _tls = new UpstreamTls(router.Options.TrustedCaFile);
        _logger = logger ?? (ILogger)NullLogger.Instance;
    }

    public UpstreamRouter Router => _router;

    public UpstreamFailureCache Failures => _failures;

    public ValueTask<ConnectResult> ConnectAsync(HostPort target, CancellationToken cancellationToken) =>
        ConnectAsync(target, new Extensions(), cancellationToken);

    public async ValueTask<ConnectResult> ConnectAsync(HostPort target, Extensions extensions, CancellationToken cancellationToken)
    {
        var route = _router.Route(extensions, _failures.BackedOffCount);
        switch (route.Kind)
        {
            case UpstreamRouteKind.Direct:
                return await _direct.ConnectAsync(target, extensions, cancellationToken).ConfigureAwait(false);
            case UpstreamRouteKind.FilterRequired:
                return ConnectResult.Failure(ConnectError.NotAllowed, route.Reason);
            case UpstreamRouteKind.NoMatch:
                LogNoMatch(_logger, target.ToString(), route.Reason);
                return ConnectResult.Failure(ConnectError.Failed, route.Reason);
        }

        if (Denied(target, null, extensions) is { } denied)
        {
            return denied; // before any upstream is dialled
        }

        var attempts = 0;
        var failures = new List<string>();
        var busy = new List<string>();
        var lastError = ConnectError.Failed;
        foreach (var candidate in Candidates(route, busy))
        {
            if (attempts == _router.Options.MaxAttempts)
            {
                break;
            }

            // An upstream at its limit is passed over (it did nothing wrong: no back-off, no attempt used).
            var lease = LimitLease.Unlimited;
            var policy = _limits.ForUpstream(candidate.MaxConnections, candidate.Rate);
            if (_limiter is not null && !policy.IsUnlimited)
            {
                lease = await _limiter.AcquireAsync(LimitScope.Upstream, candidate.Id, policy, cancellationToken).ConfigureAwait(false);
                if (!lease.IsGranted)
                {
                    LogUpstreamBusy(_logger, candidate.Id, target.ToString(), lease.Reason);
                    busy.Add(lease.Reason);
                    continue;
                }
            }

            attempts++;
            var protocol = candidate.PreferredProtocol!.Value;
            ConnectResult result;
            bool upstreamFault;
            try
            {
                (result, upstreamFault) = await DialThroughAsync(candidate, protocol, target, extensions, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                lease.Dispose();
                throw;
            }

            if (result.IsSuccess)
            {
                // The lease is held as long as the connection to the upstream is open (a tunnel, or a pooled keep-alive connection).
                result.Connection!.HoldWhileOpen(lease);
            }
            else
            {
                lease.Dispose();
            }

            if (result.IsSuccess || !upstreamFault)
            {
                // The upstream did its job (also when it reports that the target failed).
                _failures.Succeeded(candidate.Id);
                extensions.Set(new SelectedUpstream(candidate, protocol));
                ProxyInstruments.UpstreamSelected(candidate.Id);
                if (!result.IsSuccess)
                {
                    LogTargetFailed(_logger, target.ToString(), candidate.Id, result.Error, result.Detail ?? "");
                }

                return result;
            }

            var backoff = _failures.Failed(candidate.Id);
            ProxyInstruments.UpstreamFailed(candidate.Id, backoff);
            LogUpstreamFailed(_logger, candidate.Id, candidate.Address.ToString(), target.ToString(), result.Detail ?? "", backoff.TotalSeconds);
            failures.Add($"{candidate.Id}: {result.Detail}");
            lastError = result.Error == ConnectError.TimedOut ? ConnectError.TimedOut : ConnectError.Failed;
        }

        if (failures.Count == 0 && busy.Count > 0)
        {
            return ConnectResult.Failure(ConnectError.Busy, string.Join("; ", busy));
        }

        return ConnectResult.Failure(lastError, $"no upstream reached ({string.Join("; ", failures.Concat(busy))})");
    }

    /// <summary>
    /// The route's candidates in the order to try (healthy first); when upstreams were passed over at their limits and the
    /// list ran out, the selection again with room for as many more (the same pure order, so the first ones repeat and are
    /// skipped): a busy upstream never takes the place of one that could carry the connection.
    /// </summary>
    private IEnumerable<UpstreamProxy> Candidates(UpstreamRoute route, List<string> busy)
    {
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var candidates = route.Candidates;
        var backedOff = _failures.BackedOffCount;
        while (true)
        {
            foreach (var candidate in _failures.Order(candidates))
            {
                if (seen.Add(candidate.Id))
                {
                    yield return candidate;
                }
            }

            if (busy.Count == 0 || route.Filter is null)
            {
                yield break; // nobody was passed over
            }

            backedOff += busy.Count;
            var wider = _router.Decide(route.Filter, route.Session, backedOff);
            if (wider.Candidates.Count <= candidates.Count)
            {
                yield break; // the selection has no more to give
            }

            candidates = wider.Candidates;
        }
    }

    /// <summary>One attempt: TCP to the upstream, then its handshake. The flag says whether a failure is the upstream's own.</summary>
    private async ValueTask<(ConnectResult Result, bool UpstreamFault)> DialThroughAsync(UpstreamProxy upstream, UpstreamProtocol protocol, HostPort target,
        Extensions extensions, CancellationToken cancellationToken)
    {
        IPAddress? resolved = null;
        if (protocol == UpstreamProtocol.Socks5 && target.Address is null)
        {
            // socks5 (not socks5h): we resolve, the upstream gets an address.
            var addresses = await _dns.ResolveAsync(target.Host, cancellationToken).ConfigureAwait(false);
            if (addresses.Length == 0)
            {
                return (ConnectResult.Failure(ConnectError.NameNotResolved, $"{target.Host} does not resolve"), false);
            }

            resolved = addresses.FirstOrDefault(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork) ?? addresses[0];
            if (Denied(target, resolved, extensions) is { } denied)
            {
                return (denied, false); // the address we would hand over is refused: an answer about the target
            }
        }

        var dial = await _upstreams.ConnectAsync(upstream.Address.Endpoint, cancellationToken).ConfigureAwait(false);
        if (!dial.IsSuccess)
        {
            return (ConnectResult.Failure(dial.Error == ConnectError.TimedOut ? ConnectError.TimedOut : ConnectError.Failed,
                $"upstream {upstream.Address.Endpoint} {dial.Error}: {dial.Detail}"), true);
        }

        var connection = dial.Connection!;
        var credential = upstream.Address.Credential;
        using var timeout = new CancellationTokenSource(_handshakeTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            switch (protocol)
            {
                case UpstreamProtocol.Https:
                    return await _tls.ConnectAsync(connection, upstream.Address.Endpoint.Host, target, credential, linked.Token).ConfigureAwait(false);
                case UpstreamProtocol.Http:
                {
                    var handshake = await HttpConnectClient.ConnectAsync(connection, target, credential?.User, credential?.Password, linked.Token).ConfigureAwait(false);
                    return await FinishAsync(connection, handshake).ConfigureAwait(false);
                }

                default:
                {
                    var handshake = await Socks5Client.ConnectAsync(connection, target, resolved, credential?.User, credential?.Password, linked.Token).ConfigureAwait(false);
                    return await FinishAsync(connection, handshake).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            return (ConnectResult.Failure(ConnectError.TimedOut, $"upstream handshake took longer than {_handshakeTimeout.TotalSeconds:0.###} s"), true);
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or System.Security.Authentication.AuthenticationException)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            return (ConnectResult.Failure(ConnectError.Failed, "upstream handshake failed: " + ex.Message), true);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The refusal of a chained target by the destination rules, or null when they allow it (or there are none).</summary>
    private ConnectResult? Denied(HostPort target, IPAddress? address, Extensions extensions)
    {
        if (_destinations is null)
        {
            return null;
        }

        var query = new DestinationQuery(target.Host, address, target.Port, extensions.Get<ProxyUser>()?.Name);
        var verdict = _destinations.Check(query);
        if (verdict.Allowed)
        {
            return null;
        }

        var text = DestinationPolicy.Describe(query, verdict.Rule!);
        extensions.Set(new DestinationDenied(query, verdict.Rule!, text));
        LogDenied(_logger, target.ToString(), verdict.Rule!, text);
        return ConnectResult.Failure(ConnectError.NotAllowed, text);
    }

    private static async ValueTask<(ConnectResult, bool)> FinishAsync(SocketConnection connection, UpstreamHandshakeResult handshake)
    {
        if (handshake.Succeeded)
        {
            return (new ConnectResult(connection, ConnectError.None, null), false);
        }

        await connection.DisposeAsync().ConfigureAwait(false);
        return (ConnectResult.Failure(handshake.Error, handshake.Detail), handshake.UpstreamFault);
    }

    [LoggerMessage(EventId = 4000, Level = LogLevel.Warning, Message = "Upstream {Id} ({Address}) failed for {Target}: {Detail}; backed off for {Backoff:0.#} s")]
    private static partial void LogUpstreamFailed(ILogger logger, string id, string address, string target, string detail, double backoff);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Debug, Message = "Upstream {Id} could not reach {Target}: {Error} ({Detail})")]
    private static partial void LogTargetFailed(ILogger logger, string target, string id, ConnectError error, string detail);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Debug, Message = "Upstream {Id} passed over for {Target}: {Reason}")]
    private static partial void LogUpstreamBusy(ILogger logger, string id, string target, string reason);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Debug, Message = "Chained target {Target} refused by destination rule '{Rule}' ({Detail})")]
    private static partial void LogDenied(ILogger logger, string target, string rule, string detail);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "No upstream for {Target}: {Reason}")]
    private static partial void LogNoMatch(ILogger logger, string target, string reason);
}
