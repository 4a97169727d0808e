using System.Globalization;
using Akka;
using Akka.Actor;
using Akka.Cluster;
using Akka.Streams;
using Akka.Streams.Dsl;
using AkkaCluster = Akka.Cluster.Cluster;

namespace Rama.Admin.Admin;

/// <summary>
/// <c>pbm cluster ...</c>: the membership as this node sees it (<see cref="AkkaCluster.State"/>), the membership actions
/// (<see cref="AkkaCluster.Leave"/>, <see cref="AkkaCluster.Down"/>, <see cref="AkkaCluster.Join"/>) and <c>tail</c>, the
/// membership and reachability events as an Akka.Streams stream of frames.
/// </summary>
internal sealed class ClusterPalette(ActorSystem system) : IAdminPalette
{
    /// <summary>Events buffered for a slow <c>tail</c> client before its stream fails with a message.</summary>
    internal const int TailBuffer = 1024;

    private readonly Lazy<ActorMaterializer> _materializer = new(() => system.Materializer(namePrefix: "rama-admin"));

    public string Name => "cluster";

    public string Description => "Akka.Cluster membership: show, leader, leave, down, join, down-unreachable, tail";

    public IReadOnlyList<AdminCommandInfo> Commands { get; } =
    [
        new("show", "", "Members (address, status, roles, reachability, leader), the member count and this node's address"),
        new("leader", "", "The leader's address"),
        new("leave", "<address>", "Asks a member to leave gracefully (akka.tcp://rama@host:port or host:port)"),
        new("down", "<address>", "Marks a member down (the split-brain resolver's job; use for a member that is gone)"),
        new("join", "<address>", "Joins this node to the cluster of the given member"),
        new("down-unreachable", "", "Downs every member marked unreachable and lists them"),
        new("tail", "", "Membership and reachability events as they happen, until the client stops (Ctrl+C)"),
    ];

    /// <summary>Whether the actor system runs Akka.Cluster (a node started without --seeds or --cluster runs alone).</summary>
    internal static bool IsClustered(ActorSystem system) => system is ExtendedActorSystem { Provider: IClusterActorRefProvider };

    public async ValueTask<int> ExecuteAsync(AdminRequest request, IAdminResponse response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(response);
        if (!IsClustered(system))
        {
            return await response.FailAsync("this node runs alone: it was started without --seeds or --cluster", cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        var cluster = AkkaCluster.Get(system);
        var args = request.Args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToList();
        return request.Command switch
        {
            "show" => await ShowAsync(cluster, response, cancellationToken).ConfigureAwait(false),
            "leader" => await LeaderAsync(cluster, response, cancellationToken).ConfigureAwait(false),
            "leave" or "down" or "join" => await ActAsync(cluster, request.Command, args, response, cancellationToken).ConfigureAwait(false),
            "down-unreachable" => await DownUnreachableAsync(cluster, response, cancellationToken).ConfigureAwait(false),
            "tail" => await TailAsync(cluster, response, cancellationToken).ConfigureAwait(false),
            _ => await response.FailAsync($"cluster has no command '{request.Command}'", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false),
        };
    }

    private static async Task<int> ShowAsync(AkkaCluster cluster, IAdminResponse response, CancellationToken cancellationToken)
    {
        var state = cluster.State;
        var rows = state.Members.Union(state.Unreachable)
            .OrderBy(m => m.Address.ToString(), StringComparer.Ordinal)
            .Select(m => (IReadOnlyList<string>)
            [
                m.Address.ToString(),
                m.Status.ToString(),
                string.Join(",", m.Roles.Order(StringComparer.Ordinal)),
                Reachability(cluster, m),
                m.Address.Equals(state.Leader) ? "leader" : "",
                m.Address.Equals(cluster.SelfAddress) ? "self" : "",
            ])
            .ToList();
        await response.TableAsync("members", ["address", "status", "roles", "reachability", "leader", "self"], rows, cancellationToken).ConfigureAwait(false);
        await response.ValuesAsync(new Dictionary<string, string>
        {
            ["self"] = cluster.SelfAddress.ToString(),
            ["selfStatus"] = cluster.SelfMember.Status.ToString(),
            ["count"] = rows.Count.ToString(CultureInfo.InvariantCulture),
            ["unreachable"] = state.Unreachable.Count.ToString(CultureInfo.InvariantCulture),
            ["leader"] = state.Leader?.ToString() ?? "(none)",
        }, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }

    /// <summary>reachable, or unreachable and by whom: this node's failure detector, or other members' (in the gossip).</summary>
    private static string Reachability(AkkaCluster cluster, Member member)
    {
        if (!cluster.State.Unreachable.Contains(member))
        {
            return "reachable";
        }

        var detector = cluster.FailureDetector;
        var byUs = detector.IsMonitoring(member.Address) && !detector.IsAvailable(member.Address);
        return byUs ? "unreachable (by this node)" : "unreachable (by other members)";
    }

    private static async Task<int> LeaderAsync(AkkaCluster cluster, IAdminResponse response, CancellationToken cancellationToken)
    {
        if (cluster.State.Leader is not { } leader)
        {
            return await response.FailAsync("no leader yet: this node has not joined a cluster (or no member is Up)", cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        await response.ValuesAsync(new Dictionary<string, string> { ["leader"] = leader.ToString() }, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }

    private static async Task<int> ActAsync(AkkaCluster cluster, string command, List<string> args, IAdminResponse response, CancellationToken cancellationToken)
    {
        if (args.Count != 1)
        {
            return await response.FailAsync($"usage: cluster {command} <address> (akka.tcp://system@host:port or host:port)", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
        }

        var (address, problem) = Resolve(cluster, args[0], mustBeMember: command != "join");
        if (address is null)
        {
            return await response.FailAsync(problem!, cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        switch (command)
        {
            case "leave":
                cluster.Leave(address);
                await response.TextAsync($"asked {address} to leave", cancellationToken).ConfigureAwait(false);
                break;
            case "down":
                cluster.Down(address);
                await response.TextAsync($"marked {address} down", cancellationToken).ConfigureAwait(false);
                break;
            default:
                cluster.Join(address);
                await response.TextAsync($"joining {address}", cancellationToken).ConfigureAwait(false);
                break;
        }

        return AdminExitCodes.Ok;
    }

    private static async Task<int> DownUnreachableAsync(AkkaCluster cluster, IAdminResponse response, CancellationToken cancellationToken)
    {
        var unreachable = cluster.State.Unreachable.OrderBy(m => m.Address.ToString(), StringComparer.Ordinal).ToList();
        foreach (var member in unreachable)
        {
            cluster.Down(member.Address);
        }

        await response.TableAsync("downed", ["address", "status", "roles"],
            [.. unreachable.Select(m => (IReadOnlyList<string>)[m.Address.ToString(), m.Status.ToString(), string.Join(",", m.Roles.Order(StringComparer.Ordinal))])],
            cancellationToken).ConfigureAwait(false);
        await response.TextAsync(unreachable.Count == 0 ? "no member is unreachable" : $"downed {unreachable.Count} unreachable member(s)", cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }

    /// <summary>
    /// A full address (<c>akka.tcp://rama@10.0.0.5:4054</c>) or <c>host:port</c>, matched against the members
    /// (<paramref name="mustBeMember"/>) or, for <c>join</c>, completed with this node's protocol and system name.
    /// </summary>
    internal static (Address? Address, string? Problem) Resolve(AkkaCluster cluster, string text, bool mustBeMember)
    {
        var members = cluster.State.Members.Union(cluster.State.Unreachable).Select(m => m.Address).ToList();
        Address? address = null;
        if (text.Contains("://", StringComparison.Ordinal))
        {
            if (!ActorPath.TryParseAddress(text, out address))
            {
                return (null, $"'{text}' is not an Akka address (akka.tcp://system@host:port) nor host:port");
            }
        }
        else
        {
            var colon = text.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                return (null, $"'{text}' is not an Akka address (akka.tcp://system@host:port) nor host:port");
            }

            var host = text[..colon].Trim('[', ']');
            address = members.FirstOrDefault(a => string.Equals(a.Host, host, StringComparison.OrdinalIgnoreCase) && a.Port == port);
            if (address is null && !mustBeMember)
            {
                var self = cluster.SelfAddress;
                address = new Address(self.Protocol, self.System, host, port);
            }
        }

        if (mustBeMember && (address is null || !members.Contains(address)))
        {
            return (null, $"no member at {text}: the members are {(members.Count == 0 ? "(none)" : string.Join(", ", members.Select(a => a.ToString()).Order(StringComparer.Ordinal)))}");
        }

        return (address, null);
    }

    private async Task<int> TailAsync(AkkaCluster cluster, IAdminResponse response, CancellationToken cancellationToken)
    {
        // Source.ActorRef: the cluster's event publisher tells the stream's actor; each event becomes one frame, written
        // in order (SelectAsync(1)). A client slower than TailBuffer events fails the stream rather than holding memory.
        var ((subscriber, killSwitch), completion) = Source.ActorRef<object>(TailBuffer, OverflowStrategy.Fail)
            .Select(ToFrame)
            .Where(frame => frame is not null)
            .SelectAsync(1, async frame =>
            {
                await response.WriteAsync(frame!, cancellationToken).ConfigureAwait(false);
                return NotUsed.Instance;
            })
            .ViaMaterialized(KillSwitches.Single<NotUsed>(), Keep.Both)
            .ToMaterialized(Sink.Ignore<NotUsed>(), Keep.Both)
            .Run(_materializer.Value);
        cluster.Subscribe(subscriber, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.IReachabilityEvent));
        try
        {
            await using (cancellationToken.Register(killSwitch.Shutdown).ConfigureAwait(false))
            {
                await completion.ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is BufferOverflowException)
        {
            return await response.FailAsync($"tail stopped: more than {TailBuffer} events waited for this client", cancellationToken: CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception) when (cancellationToken.IsCancellationRequested)
        {
            // The client left (or the endpoint closes): the stream's end, not a failure.
        }
        finally
        {
            cluster.Unsubscribe(subscriber);
            killSwitch.Shutdown();
        }

        return AdminExitCodes.Ok;
    }

    /// <summary>One event as a frame: its kind in kebab case (<c>member-up</c>), the member's address, status and roles.</summary>
    internal static AdminFrame? ToFrame(object message)
    {
        (string Kind, Member Member)? change = message switch
        {
            ClusterEvent.MemberStatusChange m => (Kebab(m.GetType().Name), m.Member),
            ClusterEvent.ReachabilityEvent r => (Kebab(r.GetType().Name), r.Member),
            _ => null,
        };
        if (change is not { } found)
        {
            return null;
        }

        var (kind, member) = found;

        var fields = new Dictionary<string, string>
        {
            ["event"] = kind,
            ["address"] = member.Address.ToString(),
            ["status"] = member.Status.ToString(),
            ["roles"] = string.Join(",", member.Roles.Order(StringComparer.Ordinal)),
            ["time"] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        };
        if (message is ClusterEvent.MemberRemoved removed)
        {
            fields["previousStatus"] = removed.PreviousStatus.ToString();
        }

        return AdminFrame.Event(kind, fields, $"{kind} {member.Address} ({member.Status})");
    }

    private static string Kebab(string typeName) =>
        string.Concat(typeName.Select((c, i) => char.IsUpper(c) && i > 0 ? "-" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
}
