using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Net.Destinations;

namespace Rama.Proxy.Http;

/// <summary>
/// The HTTP answer to a refused destination (forward requests and CONNECT alike): the forward service answers a
/// <see cref="ConnectError.NotAllowed"/> dial with a bare 403; this layer, inside the auth layer, gives it the rule's
/// text as its body (squid's ERR_ACCESS_DENIED names the ACL in its logs; we tell the client too, the rule name is the
/// operator's, not a secret of the target) and a debug line. The access log records the 403 as for any answer.
/// With per-user rules, a user's plain HTTP requests reuse only origin connections dialled for that user (the pool
/// partition gets the user): a connection checked for one user is never handed to another whom a rule refuses.
/// </summary>
public sealed partial class DestinationDenialLayer(DestinationPolicy policy, ILogger? logger = null) : ILayer<HttpRequest, HttpResponse>
{
    private readonly ILogger _logger = logger ?? NullLogger.Instance;
    private readonly bool _poolPerUser = policy.HasUserRules;

    public IService<HttpRequest, HttpResponse> Layer(IService<HttpRequest, HttpResponse> inner) => new Answering(this, inner);

    private sealed class Answering(DestinationDenialLayer layer, IService<HttpRequest, HttpResponse> inner) : IService<HttpRequest, HttpResponse>
    {
        public async ValueTask<HttpResponse> ServeAsync(HttpRequest request, CancellationToken cancellationToken)
        {
            if (layer._poolPerUser && request.Extensions.Get<ProxyUser>() is { } user)
            {
                var partition = request.Extensions.Get<ConnectionPoolPartition>();
                request.Extensions.Set(new ConnectionPoolPartition((partition is null ? "" : partition.Name + "/") + "user:" + user.Name));
            }

            var response = await inner.ServeAsync(request, cancellationToken).ConfigureAwait(false);
            if (response.Status != 403 || !request.Extensions.TryGet<DestinationDenied>(out var denied))
            {
                return response;
            }

            LogDenied(layer._logger, request.Method, request.Target, denied.Rule, denied.Text);
            await response.Body.CompleteAsync().ConfigureAwait(false);
            var answer = HttpResponse.Text(403, "Forbidden: " + denied.Text, response.CloseConnection);
            return answer;
        }
    }

    [LoggerMessage(EventId = 1110, Level = LogLevel.Debug, Message = "{Method} {Target}: refused by destination rule '{Rule}' ({Detail})")]
    private static partial void LogDenied(ILogger logger, string method, string target, string rule, string detail);
}
