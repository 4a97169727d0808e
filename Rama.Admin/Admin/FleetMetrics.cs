using System.Diagnostics.Metrics;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;

namespace Rama.Admin.Admin;

/// <summary>
/// The <c>Rama.Fleet</c> meter of one actor system: cluster members by status, unreachable members, this member's
/// status (as seen by this node), the actor system's uptime and its dead letters. Gauges read the cluster's own state
/// (<see cref="Akka.Cluster.Cluster.State"/>, kept by Akka) when collected; nothing is kept here but the dead-letter count.
/// </summary>
internal sealed class FleetMetrics : IDisposable
{
    private static readonly MemberStatus[] s_statuses = Enum.GetValues<MemberStatus>();
    private readonly Meter _meter;
    private readonly ActorSystem _system;
    private readonly IActorRef _deadLetters;
    private long _deadLetterCount;

    public FleetMetrics(ActorSystem system)
    {
        _system = system;
        _meter = new Meter(AdminMetrics.FleetMeter);
        var cluster = ((ExtendedActorSystem)system).Provider is ClusterActorRefProvider ? Akka.Cluster.Cluster.Get(system) : null;
        if (cluster is not null)
        {
            _meter.CreateObservableGauge("rama.cluster.members", () => Members(cluster), "{member}", "Cluster members by status, as this node sees them.");
            _meter.CreateObservableGauge("rama.cluster.unreachable_members", () => cluster.State.Unreachable.Count, "{member}", "Members this node's failure detector marks unreachable.");
            _meter.CreateObservableGauge("rama.cluster.self_up", () => cluster.SelfMember.Status == MemberStatus.Up ? 1 : 0, "1", "1 when this node is an Up member.");
        }

        _meter.CreateObservableCounter("rama.actor_system.uptime", () => system.Uptime.TotalSeconds, "s", "How long the actor system has run.");
        _meter.CreateObservableCounter("rama.actor_system.dead_letters", () => Interlocked.Read(ref _deadLetterCount), "{message}", "Messages sent to actors that were gone.");
        _deadLetters = system.ActorOf(Props.Create(() => new DeadLetterCounter(this)), "rama-dead-letter-metrics");
    }

    private static IEnumerable<Measurement<int>> Members(Akka.Cluster.Cluster cluster)
    {
        var members = cluster.State.Members;
        foreach (var status in s_statuses)
        {
            var count = 0;
            foreach (var member in members)
            {
                if (member.Status == status)
                {
                    count++;
                }
            }

            yield return new Measurement<int>(count, new KeyValuePair<string, object?>("rama.member.status", status.ToString().ToLowerInvariant()));
        }
    }

    public void Dispose()
    {
        _meter.Dispose();
        _system.Stop(_deadLetters);
    }

    /// <summary>Counts <see cref="DeadLetter"/>s from the event stream.</summary>
    private sealed class DeadLetterCounter : ReceiveActor
    {
        public DeadLetterCounter(FleetMetrics owner)
        {
            Receive<DeadLetter>(_ => Interlocked.Increment(ref owner._deadLetterCount));
        }

        protected override void PreStart() => Context.System.EventStream.Subscribe(Self, typeof(DeadLetter));

        protected override void PostStop() => Context.System.EventStream.Unsubscribe(Self);
    }
}
