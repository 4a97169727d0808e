using System.Globalization;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Rama.Actors.Hosting;
using Rama.Actors.Limits;
using Rama.Actors.Upstreams;
using Rama.Admin.Admin;
using Rama.Proxy.Limits;

namespace Rama.Actors.Admin;

/// <summary>
/// <c>pbm limits show &lt;upstream id|user&gt;</c> on a fleet node: what the key's sharded entity holds (leases in total
/// and per node, tokens, the fleet's health of an upstream) beside this node's view (its policy for the key, its own
/// back-off). A name that is a record id of this node's replica is an upstream, anything else a user; <c>--user</c> or
/// <c>--upstream</c> says which.
/// </summary>
internal sealed class LimitsPalette(FleetLimits limits, LimitOptions options, FleetProxyDatabase replica, IRequiredActor<LimitsRegion> region) : IAdminPalette
{
    public string Name => "limits";

    public string Description => "The fleet's limits and upstream health: show";

    public IReadOnlyList<AdminCommandInfo> Commands { get; } =
    [
        new("show", "<upstream id|user> [--user|--upstream]", "Leases held fleet-wide and per node, the policy, tokens left, and an upstream's health"),
    ];

    public async ValueTask<int> ExecuteAsync(AdminRequest request, IAdminResponse response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(response);
        if (request.Command != "show")
        {
            return await response.FailAsync($"limits has no command '{request.Command}'", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
        }

        var args = request.Args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToList();
        if (args.Count != 1 || string.IsNullOrWhiteSpace(args[0]))
        {
            return await response.FailAsync("usage: limits show <upstream id|user> [--user|--upstream]", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
        }

        var name = args[0];
        var record = replica.Snapshot.Records.FirstOrDefault(r => string.Equals(r.Id, name, StringComparison.OrdinalIgnoreCase));
        var scope = request.Args.Contains("--user") ? LimitScope.User
            : request.Args.Contains("--upstream") || record is not null ? LimitScope.Upstream
            : LimitScope.User;
        var policy = scope == LimitScope.User ? options.ForUser(name) : options.ForUpstream(record?.MaxConnections, record?.Rate);
        var key = LimitKeys.Of(scope, name);
        LimitStateReply state;
        try
        {
            var limitsRegion = await region.GetAsync(cancellationToken).ConfigureAwait(false);
            state = await limitsRegion.Ask<LimitStateReply>(new GetLimitState(key), TimeSpan.FromSeconds(3), cancellationToken).ConfigureAwait(false);
        }
        catch (AskTimeoutException)
        {
            return await response.FailAsync($"the limits entity of {key} did not answer within 3 s (its shard may be moving)", cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        var rows = state.HeldByNode.OrderBy(n => n.Key, StringComparer.Ordinal)
            .Select(n => (IReadOnlyList<string>)[n.Key, n.Value.ToString(CultureInfo.InvariantCulture)]).ToList();
        await response.TableAsync("leases", ["node", "held"], rows, cancellationToken).ConfigureAwait(false);
        var values = new Dictionary<string, string>
        {
            ["key"] = key,
            ["scope"] = scope == LimitScope.User ? "user" : "upstream",
            ["policy"] = policy.ToString(),
            ["held"] = state.Held.ToString(CultureInfo.InvariantCulture),
            ["granted"] = state.Granted.ToString(CultureInfo.InvariantCulture),
            ["refused"] = state.Refused.ToString(CultureInfo.InvariantCulture),
            ["tokens"] = state.Tokens?.ToString("0.##", CultureInfo.InvariantCulture) ?? "",
            ["entityOn"] = state.Owner,
            ["fallbacks"] = limits.Limiter.Fallbacks.ToString(CultureInfo.InvariantCulture),
        };
        if (scope == LimitScope.Upstream)
        {
            var id = record?.Id ?? name;
            values["record"] = record is null ? "(not in this node's replica)" : record.Address.ToString();
            values["failures"] = state.Failures.ToString(CultureInfo.InvariantCulture);
            values["backedOffMs"] = state.BackedOffMsLeft.ToString(CultureInfo.InvariantCulture);
            values["backedOffHereMs"] = ((long)limits.Health.Cache.Remaining(id).TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
        }

        await response.ValuesAsync(values, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }
}

/// <summary>The <c>limits</c> palette of <c>pbm</c>.</summary>
public static class FleetLimitsAdminExtensions
{
    /// <summary>Registers <c>pbm limits show</c> (needs the proxydb palette's replica registration, <see cref="FleetProxyDbAdminExtensions.AddRamaFleetProxyDbAdmin"/>).</summary>
    public static IServiceCollection AddRamaFleetLimitsAdmin(this IServiceCollection services, FleetLimits limits, LimitOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(limits);
        services.TryAddSingleton(options);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAdminPalette, LimitsPalette>());
        return services;
    }
}
