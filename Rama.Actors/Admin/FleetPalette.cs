using System.Globalization;
using Akka.Actor;
using Akka.Hosting;
using Rama.Actors.Hosting;
using Rama.Actors.Shutdown;
using Rama.Admin.Admin;
using Rama.Admin.Cluster;

namespace Rama.Actors.Admin;

/// <summary>
/// <c>pbm fleet status|drain|roll [cancel]</c>: the fleet's shutdown coordinator (a cluster singleton on the proxy nodes),
/// asked through its proxy on this node, so any proxy node's admin endpoint answers for the whole fleet.
/// </summary>
internal sealed class FleetPalette(ActorRegistry registry) : IAdminPalette
{
    /// <summary>How long a command waits for the coordinator: its members' answers (3 s) plus a singleton hand-over's wait.</summary>
    internal static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);

    public string Name => "fleet";

    public string Description => "The proxy fleet's shutdown coordinator: status, drain, roll";

    public IReadOnlyList<AdminCommandInfo> Commands { get; } =
    [
        new("status", "", "Every member's phase (serving, draining, leaving, ...) and open connections, where the coordinator runs, the last roll"),
        new("drain", "", "Every proxy node stops accepting, drains (up to its drain timeout), leaves the fleet and exits 0; lighthouses stay"),
        new("roll", "[cancel]", "Restarts the proxy nodes one at a time (drain, leave, exit; the next once N serve again: never fewer than N-1); progress in status; 'roll cancel' stops it (a node already draining still restarts)"),
    ];

    public async ValueTask<int> ExecuteAsync(AdminRequest request, IAdminResponse response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(response);
        // pbm appends --json for scripts (the answer's frames are the same either way): it is no argument of these commands.
        string[] args = [.. request.Args.Where(a => a != "--json")];
        object question = (request.Command, args) switch
        {
            ("status", []) => GetFleetStatus.Instance,
            ("drain", []) => DrainFleet.Instance,
            ("roll", []) => StartRoll.Instance,
            ("roll", ["cancel"]) => CancelRoll.Instance,
            _ => null!,
        };
        if (question is null)
        {
            var problem = request.Command is "status" or "drain" or "roll"
                ? $"usage: fleet {request.Command}{(request.Command == "roll" ? " [cancel]" : "")} (got '{string.Join(' ', args)}')"
                : $"fleet has no command '{request.Command}'";
            return await response.FailAsync(problem, AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
        }

        if (!registry.TryGet<FleetShutdown>(out var coordinator))
        {
            return await response.FailAsync("this node runs alone (started without --seeds or --cluster): there is no fleet to coordinate", cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        object answer;
        try
        {
            answer = await coordinator.Ask<object>(question, AskTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (AskTimeoutException)
        {
            return await response.FailAsync($"the fleet's coordinator did not answer within {AskTimeout.TotalSeconds:0} s (no proxy node Up, or it is moving: try again)", cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        return answer switch
        {
            FleetStatus status => await StatusAsync(status, response, cancellationToken).ConfigureAwait(false),
            FleetDrainStarted drain => await DrainAsync(drain, response, cancellationToken).ConfigureAwait(false),
            RollProgress roll => await RollAsync(roll, response, cancellationToken).ConfigureAwait(false),
            Status.Failure failure => await response.FailAsync("the fleet's coordinator failed: " + failure.Cause.Message, cancellationToken: cancellationToken).ConfigureAwait(false),
            _ => await response.FailAsync($"the fleet's coordinator answered {answer.GetType().Name}", cancellationToken: cancellationToken).ConfigureAwait(false),
        };
    }

    private static async Task<int> StatusAsync(FleetStatus status, IAdminResponse response, CancellationToken cancellationToken)
    {
        static string Number(int? value) => value?.ToString(CultureInfo.InvariantCulture) ?? "-";
        var rows = status.Members
            .Select(m => (IReadOnlyList<string>)
            [
                m.Address,
                m.Roles,
                m.MemberStatus,
                m.Phase,
                Number(m.OpenConnections),
                m.Listeners is { } listeners ? $"{Number(m.Bound)}/{listeners.ToString(CultureInfo.InvariantCulture)}" : "-",
            ])
            .ToList();
        await response.TableAsync("members", ["address", "roles", "status", "phase", "open", "bound"], rows, cancellationToken).ConfigureAwait(false);
        var proxies = status.Members.Where(m => m.Roles.Split(',').Contains(ClusterOptions.ProxyRole, StringComparer.Ordinal)).ToList();
        var fields = new Dictionary<string, string>
        {
            ["coordinator"] = status.Coordinator,
            ["proxyNodes"] = proxies.Count.ToString(CultureInfo.InvariantCulture),
            ["serving"] = proxies.Count(m => m.Phase == FleetPhase.Serving).ToString(CultureInfo.InvariantCulture),
            ["open"] = proxies.Sum(m => m.OpenConnections ?? 0).ToString(CultureInfo.InvariantCulture),
        };
        if (status.Roll is { } roll)
        {
            AddRoll(fields, roll);
        }

        await response.ValuesAsync(fields, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }

    private static async Task<int> DrainAsync(FleetDrainStarted drain, IAdminResponse response, CancellationToken cancellationToken)
    {
        await response.TableAsync("draining", ["address"], [.. drain.Draining.Select(a => (IReadOnlyList<string>)[a])], cancellationToken).ConfigureAwait(false);
        await response.TextAsync($"{drain.Draining.Count} proxy node(s) drain and leave; lighthouses stay (watch: pbm <lighthouse> cluster show)", cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }

    private static async Task<int> RollAsync(RollProgress roll, IAdminResponse response, CancellationToken cancellationToken)
    {
        var fields = new Dictionary<string, string>();
        AddRoll(fields, roll);
        await response.ValuesAsync(fields, cancellationToken).ConfigureAwait(false);
        return roll.State == "refused"
            ? await response.FailAsync(roll.Detail, cancellationToken: cancellationToken).ConfigureAwait(false)
            : AdminExitCodes.Ok;
    }

    /// <summary>The roll's fields: <c>roll</c> (rolling, done, cancelled, refused), <c>rolled</c> (n/N), <c>rollCurrent</c>, <c>rollSeconds</c>, <c>rollDetail</c>.</summary>
    private static void AddRoll(Dictionary<string, string> fields, RollProgress roll)
    {
        fields["roll"] = roll.State;
        fields["rollId"] = roll.Id;
        fields["rolled"] = $"{roll.Rolled.ToString(CultureInfo.InvariantCulture)}/{roll.Nodes.ToString(CultureInfo.InvariantCulture)}";
        fields["rollCurrent"] = roll.Current ?? "-";
        fields["rollSeconds"] = roll.ElapsedSeconds.ToString("0.0", CultureInfo.InvariantCulture);
        fields["rollDetail"] = roll.Detail;
    }
}
