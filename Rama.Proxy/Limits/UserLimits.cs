using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Http;

namespace Rama.Proxy.Limits;

/// <summary>
/// Per-user concurrency (what proxy providers sell plans by): a user's CONNECT and SOCKS5 tunnels and HTTP requests in
/// flight count against <see cref="LimitOptions.ForUser"/>, on this node or fleet-wide (<see cref="Limiter"/>). An idle
/// keep-alive client connection does not count; a user's request or tunnel over the limit is refused with the reason:
/// HTTP 429 with Retry-After, SOCKS5 reply 0x02 (connection not allowed by ruleset).
/// </summary>
public sealed record UserLimits(IConcurrencyLimiter Limiter, LimitOptions Options)
{
    /// <summary>A lease for <paramref name="user"/>'s next tunnel or request: unlimited for anonymous clients and users without a limit.</summary>
    public ValueTask<LimitLease> AcquireAsync(ProxyUser? user, CancellationToken cancellationToken)
    {
        if (user is null)
        {
            return ValueTask.FromResult(LimitLease.Unlimited);
        }

        var policy = Options.ForUser(user.Name);
        return policy.IsUnlimited
            ? ValueTask.FromResult(LimitLease.Unlimited)
            : Limiter.AcquireAsync(LimitScope.User, user.Name, policy, cancellationToken);
    }
}

/// <summary>
/// The HTTP side of <see cref="UserLimits"/>, inside the auth layer: a request holds its user's lease until its response
/// body is done; a CONNECT holds it until the tunnel ends. Over the limit: 429 with Retry-After, the limit named in the
/// body, and a debug line.
/// </summary>
public sealed partial class UserLimitLayer(UserLimits limits, ILogger? logger = null) : ILayer<HttpRequest, HttpResponse>
{
    private readonly ILogger _logger = logger ?? NullLogger.Instance;
    private readonly UserLimits _limits = limits;

    public IService<HttpRequest, HttpResponse> Layer(IService<HttpRequest, HttpResponse> inner) => new Limited(this, inner);

    private sealed class Limited(UserLimitLayer layer, IService<HttpRequest, HttpResponse> inner) : IService<HttpRequest, HttpResponse>
    {
        public async ValueTask<HttpResponse> ServeAsync(HttpRequest request, CancellationToken cancellationToken)
        {
            var user = request.Extensions.Get<ProxyUser>();
            var lease = await layer._limits.AcquireAsync(user, cancellationToken).ConfigureAwait(false);
            if (!lease.IsGranted)
            {
                LogRefused(layer._logger, request.Method, request.Target, lease.Reason);
                request.Extensions.Set(new Observability.AccessRefusal(lease.Reason)); // the reason on the access line
                var refused = HttpResponse.Text(429, "Too Many Requests: " + lease.Reason);
                refused.Headers.Add("Retry-After", RetryAfterSeconds(lease.RetryAfter));
                return refused;
            }

            if (ReferenceEquals(lease, LimitLease.Unlimited))
            {
                return await inner.ServeAsync(request, cancellationToken).ConfigureAwait(false);
            }

            // Safety net: whatever happens to the response, the lease goes when the client's connection does.
            var onClose = cancellationToken.Register(static s => ((LimitLease)s!).Dispose(), lease);
            HttpResponse response;
            try
            {
                response = await inner.ServeAsync(request, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await onClose.DisposeAsync().ConfigureAwait(false);
                lease.Dispose();
                throw;
            }

            if (response.OnUpgrade is { } upgrade && response.Status is 101 or (>= 200 and < 300))
            {
                response.OnUpgrade = async (transport, token) =>
                {
                    try
                    {
                        await upgrade(transport, token).ConfigureAwait(false);
                    }
                    finally
                    {
                        await onClose.DisposeAsync().ConfigureAwait(false);
                        lease.Dispose();
                    }
                };
                return response;
            }

            response.Body = new ReleasingBody(response.Body, () =>
            {
                onClose.Dispose();
                lease.Dispose();
            });
            return response;
        }
    }

    internal static string RetryAfterSeconds(TimeSpan? retryAfter) =>
        Math.Max(1, (int)Math.Ceiling((retryAfter ?? TimeSpan.FromSeconds(1)).TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);

    [LoggerMessage(EventId = 2030, Level = LogLevel.Debug, Message = "{Method} {Target}: refused 429: {Reason}")]
    private static partial void LogRefused(ILogger logger, string method, string target, string reason);

    /// <summary>A response body that runs <c>done</c> once, when the server completes it (sent, failed, or never sent).</summary>
    private sealed class ReleasingBody(PipeReader inner, Action done) : PipeReader
    {
        private Action? _done = done;

        public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => inner.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null)
        {
            try
            {
                inner.Complete(exception);
            }
            finally
            {
                Interlocked.Exchange(ref _done, null)?.Invoke();
            }
        }

        public override async ValueTask CompleteAsync(Exception? exception = null)
        {
            try
            {
                await inner.CompleteAsync(exception).ConfigureAwait(false);
            }
            finally
            {
                Interlocked.Exchange(ref _done, null)?.Invoke();
            }
        }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => inner.ReadAsync(cancellationToken);

        public override bool TryRead(out ReadResult result) => inner.TryRead(out result);
    }
}
