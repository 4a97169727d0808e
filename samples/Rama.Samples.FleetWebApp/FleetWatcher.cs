using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using static Akka.Cluster.ClusterEvent;

namespace Rama.Samples.FleetWebApp;

/// <summary>Asks the <see cref="FleetWatcher"/> for the fleet as it sees it. Answer: <see cref="FleetView"/>.</summary>
internal sealed record GetFleetView
{
    public static readonly GetFleetView Instance = new();
}

/// <summary>One member of the fleet as this member sees it.</summary>
internal sealed record FleetMember(string Address, string Status, IReadOnlyList<string> Roles, bool Reachable, bool Leader, bool Self);

/// <summary>The fleet as this member sees it, and how many cluster events the watcher has seen since it started.</summary>
internal sealed record FleetView(string Self, string SelfStatus, string? Leader, IReadOnlyList<FleetMember> Members, IReadOnlyList<string> Unreachable, long Events);

/// <summary>
/// The web app's own actor: subscribes to Akka.Cluster's membership, reachability and leader events (starting from a
/// snapshot of the current state) and keeps the fleet's members, so the web endpoint asks an actor instead of sharing
/// state. Found through Akka.Hosting's registry (<c>IRequiredActor&lt;FleetWatcher&gt;</c>).
/// </summary>
internal sealed class FleetWatcher : ReceiveActor
{
    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<Address, Member> _members = [];
    private readonly HashSet<Address> _unreachable = [];
    private Address? _leader;
    private long _events;

    public FleetWatcher()
    {
        Receive<CurrentClusterState>(state =>
        {
            _members.Clear();
            foreach (var member in state.Members.Concat(state.Unreachable))
            {
                _members[member.Address] = member;
            }

            _unreachable.Clear();
            _unreachable.UnionWith(state.Unreachable.Select(m => m.Address));
            _leader = state.Leader;
        });
        Receive<IMemberEvent>(e =>
        {
            _events++;
            if (e is MemberRemoved)
            {
                _members.Remove(e.Member.Address);
                _unreachable.Remove(e.Member.Address);
            }
            else
            {
                _members[e.Member.Address] = e.Member;
            }

            _log.Info("Fleet member {0} is {1} (roles {2})", e.Member.Address, e.Member.Status, string.Join(",", e.Member.Roles));
        });
        Receive<UnreachableMember>(e =>
        {
            _events++;
            _unreachable.Add(e.Member.Address);
            _log.Warning("Fleet member {0} is unreachable", e.Member.Address);
        });
        Receive<ReachableMember>(e =>
        {
            _events++;
            _unreachable.Remove(e.Member.Address);
            _log.Info("Fleet member {0} is reachable again", e.Member.Address);
        });
        Receive<LeaderChanged>(e =>
        {
            _events++;
            _leader = e.Leader;
        });
        Receive<GetFleetView>(_ => Sender.Tell(View()));
    }

    public static Props Props() => Akka.Actor.Props.Create(() => new FleetWatcher());

    protected override void PreStart() =>
        _cluster.Subscribe(Self, SubscriptionInitialStateMode.InitialStateAsSnapshot,
            typeof(IMemberEvent), typeof(IReachabilityEvent), typeof(LeaderChanged));

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    private FleetView View()
    {
        var self = _cluster.SelfAddress;
        var members = _members.Values
            .OrderBy(m => m.Address.ToString(), StringComparer.Ordinal)
            .Select(m => new FleetMember(
                m.Address.ToString(),
                m.Status.ToString(),
                [.. m.Roles.Order(StringComparer.Ordinal)],
                !_unreachable.Contains(m.Address),
                m.Address.Equals(_leader),
                m.Address.Equals(self)))
            .ToList();
        var selfStatus = _members.TryGetValue(self, out var me) ? me.Status.ToString() : _cluster.SelfMember.Status.ToString();
        return new FleetView(self.ToString(), selfStatus, _leader?.ToString(), members,
            [.. _unreachable.Select(a => a.ToString()).Order(StringComparer.Ordinal)], _events);
    }
}
