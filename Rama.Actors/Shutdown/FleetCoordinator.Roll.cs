using System.Globalization;
using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Microsoft.Extensions.Logging;

namespace Rama.Actors.Shutdown;

/// <summary>
/// The roll: one proxy node at a time leaves, drains and exits (the process supervisor, e.g. <c>deploy/fleet up</c> in
/// a loop, starts it again), and the next goes only when N nodes serve again. The plan lives in Akka.DistributedData,
/// written with write-majority before each node is told to drain; a coordinator that starts (the singleton moved)
/// reads it with read-majority and carries on, re-deriving what is done from the membership.
/// </summary>
internal sealed partial class FleetCoordinator
{
    /// <summary>How often a roll looks at the fleet.</summary>
    internal static readonly TimeSpan RollTick = TimeSpan.FromSeconds(1);

    private static readonly LWWRegisterKey<string> PlanKey = new(RollPlan.Key);
    private static readonly TimeSpan ReplicaTimeout = TimeSpan.FromSeconds(3);

    private RollPlan? _plan;
    private bool _planLoaded;

    // The node this coordinator told to drain (or, for a plan it resumed, the one its predecessor told once the plan was
    // written): a cancel names only a node that was really told.
    private string? _toldToDrain;
    private bool _evaluating;
    private string _rollDetail = "";

    private IActorRef Replicator => DistributedData.Get(Context.System).Replicator;

    private sealed record Tick
    {
        public static readonly Tick Instance = new();
    }

    private sealed record Evaluate(FleetStatus Status);

    private sealed record StartWith(FleetStatus Status, IActorRef ReplyTo);

    private sealed record PlanWritten(RollPlan Plan, string? Drain);

    private void ReceiveRoll()
    {
        Receive<StartRoll>(_ =>
        {
            if (_plan is { Rolling: true } plan)
            {
                Sender.Tell(Progress(plan));
                return;
            }

            if (!_planLoaded)
            {
                Sender.Tell(new RollProgress("-", "refused", 0, 0, null, 0, "the coordinator has just started and reads the fleet's roll plan: try again in a few seconds"));
                return;
            }

            var replyTo = Sender;
            CollectAsync().PipeTo(Self, success: status => new StartWith(status, replyTo));
        });
        Receive<StartWith>(OnStart);
        Receive<CancelRoll>(_ => Cancel());
        Receive<Tick>(_ =>
        {
            if (_plan is { Rolling: true } && !_evaluating)
            {
                _evaluating = true;
                CollectAsync().PipeTo(Self, success: status => new Evaluate(status), failure: _ => new Evaluate(new FleetStatus([], "", null)));
            }
        });
        Receive<Evaluate>(evaluate =>
        {
            _evaluating = false;
            if (_plan is { Rolling: true } plan)
            {
                Step(plan, evaluate.Status);
            }
        });
        Receive<PlanWritten>(written =>
        {
            // Not when the roll was cancelled while this write was on its way to a majority.
            if (written.Drain is { } node && _plan is { Rolling: true } plan && plan.Current == node)
            {
                TellDrain(node);
            }
        });
        Receive<GetSuccess>(success =>
        {
            _planLoaded = true;
            if (success.Get(PlanKey) is { } register && RollPlan.FromJson(register.Value) is { } plan)
            {
                _plan = plan;
                if (plan.Rolling)
                {
                    _toldToDrain = plan.Current;
                    LogRollResumed(_logger, plan.Id, plan.Current ?? "-");
                }
            }
        });
        Receive<NotFound>(_ => _planLoaded = true);
        Receive<GetFailure>(_ =>
        {
            // No majority answered in time: the local replica (gossiped from the others) is the best there is.
            if (!_planLoaded)
            {
                Replicator.Tell(Dsl.Get(PlanKey, ReadLocal.Instance));
                _planLoaded = true;
            }
        });
        Receive<UpdateSuccess>(success =>
        {
            if (success.Request is PlanWritten written)
            {
                Self.Tell(written);
            }
        });
        Receive<UpdateTimeout>(timeout =>
        {
            // Written locally, not yet on a majority: it still spreads by gossip; go on (the next tick re-sends a drain).
            if (timeout.Request is PlanWritten written)
            {
                Self.Tell(written);
            }
        });
    }

    private void LoadPlan()
    {
        Replicator.Tell(Dsl.Get(PlanKey, new ReadMajority(ReplicaTimeout)));
        Timers.StartPeriodicTimer("roll", Tick.Instance, RollTick);
    }

    private void OnStart(StartWith start)
    {
        if (_plan is { Rolling: true } running)
        {
            start.ReplyTo.Tell(Progress(running));
            return;
        }

        var proxies = ProxyIncarnations();
        var serving = Serving(start.Status, proxies);
        if (proxies.Count == 0 || serving.Count < proxies.Count)
        {
            start.ReplyTo.Tell(new RollProgress("-", "refused", proxies.Count, 0, null, 0,
                $"every proxy node must serve before a roll: {serving.Count} of {proxies.Count} do (pbm fleet status)"));
            return;
        }

        var now = DateTimeOffset.UtcNow;
        var plan = new RollPlan(now.ToString("yyyyMMdd'T'HHmmss", CultureInfo.InvariantCulture), now, [.. proxies.Keys.Order(StringComparer.Ordinal)], proxies.Count, null, null);
        _rollDetail = "started";
        Write(plan, drain: null);
        LogRollStarted(_logger, plan.Id, plan.Originals.Length);
        start.ReplyTo.Tell(Progress(plan));
    }

    private void Cancel()
    {
        if (_plan is not { Rolling: true } plan)
        {
            var detail = !_planLoaded
                ? "the coordinator has just started and reads the fleet's roll plan: try again in a few seconds"
                : _plan is { } last
                    ? $"no roll is running (the last, {last.Id}, is {(last.Cancelled ? "cancelled" : "done")})"
                    : "no roll is running";
            Sender.Tell(new RollProgress(_plan?.Id ?? "-", "refused", _plan?.Originals.Length ?? 0, 0, null, 0, detail));
            return;
        }

        // The node told to drain cannot be taken back (its coordinated shutdown has begun): it leaves and its supervisor
        // starts it again, as in the roll. No other node is asked.
        var draining = plan.Current is { } current && current == _toldToDrain && ProxyIncarnations().ContainsKey(current) ? RollPlan.AddressOf(current) : null;
        var cancelled = plan with { Current = null, Finished = DateTimeOffset.UtcNow, Cancelled = true };
        var rolled = Progress(plan).Rolled;
        _rollDetail = draining is null
            ? $"cancelled after {rolled} of {plan.Originals.Length} nodes"
            : $"cancelled after {rolled} of {plan.Originals.Length} nodes; {draining} was already draining: it leaves and its supervisor starts it again";
        Write(cancelled, drain: null);
        LogRollCancelled(_logger, plan.Id, _rollDetail);
        Sender.Tell(Progress(cancelled) with { Rolled = rolled, Current = draining });
    }

    private void Step(RollPlan plan, FleetStatus status)
    {
        var proxies = ProxyIncarnations();
        var serving = Serving(status, proxies);
        var self = RollPlan.NodeId(_cluster.SelfUniqueAddress);
        var decision = RollStep.Next(plan, proxies.Keys.ToHashSet(StringComparer.Ordinal), serving, self);
        if (decision.Detail != _rollDetail)
        {
            LogRollStep(_logger, plan.Id, decision.Detail);
            _rollDetail = decision.Detail;
        }

        switch (decision.Kind)
        {
            case "drain" when plan.Current == decision.Node:
                TellDrain(decision.Node!);
                break;
            case "drain":
                Write(plan with { Current = decision.Node }, drain: decision.Node);
                break;
            case "step-done":
                Write(plan with { Current = null }, drain: null);
                break;
            case "done":
                var finished = DateTimeOffset.UtcNow;
                Write(plan with { Current = null, Finished = finished }, drain: null);
                LogRollDone(_logger, plan.Id, plan.Originals.Length, (finished - plan.Started).TotalSeconds);
                break;
        }
    }

    /// <summary>Keeps the plan here and writes it to a majority; the drain (if any) is told once the write is answered.</summary>
    private void Write(RollPlan plan, string? drain)
    {
        _plan = plan;
        var json = plan.ToJson();
        var self = _cluster.SelfUniqueAddress;
        Replicator.Tell(Dsl.Update(PlanKey, new LWWRegister<string>(self, json), new WriteMajority(ReplicaTimeout), new PlanWritten(plan, drain),
            register => register.WithValue(self, json, LWWRegister<string>.DefaultClock)));
    }

    private void TellDrain(string node)
    {
        if (_cluster.State.Members.FirstOrDefault(m => RollPlan.NodeId(m.UniqueAddress) == node) is { } member)
        {
            _toldToDrain = node;
            MemberActor(member.Address).Tell(new DrainMember("pbm fleet roll"), Self);
        }
    }

    /// <summary>The proxy incarnations in the membership (any status but removed), by <see cref="RollPlan.NodeId"/>.</summary>
    private Dictionary<string, Member> ProxyIncarnations() =>
        Members().Where(m => IsProxy(m) && m.Status != MemberStatus.Removed)
            .ToDictionary(m => RollPlan.NodeId(m.UniqueAddress), m => m, StringComparer.Ordinal);

    private static HashSet<string> Serving(FleetStatus status, Dictionary<string, Member> proxies)
    {
        var servingAddresses = status.Members.Where(m => m.Phase == FleetPhase.Serving).Select(m => m.Address).ToHashSet(StringComparer.Ordinal);
        return proxies.Where(p => servingAddresses.Contains(p.Value.Address.ToString())).Select(p => p.Key).ToHashSet(StringComparer.Ordinal);
    }

    private RollProgress Progress(RollPlan plan)
    {
        var present = _cluster.State.Members.Select(m => RollPlan.NodeId(m.UniqueAddress)).ToHashSet(StringComparer.Ordinal);
        var rolled = plan.Originals.Count(o => !present.Contains(o) && o != plan.Current);
        var elapsed = ((plan.Finished ?? DateTimeOffset.UtcNow) - plan.Started).TotalSeconds;
        if (plan.Cancelled)
        {
            return new RollProgress(plan.Id, "cancelled", plan.Originals.Length, rolled, null, elapsed,
                _rollDetail.StartsWith("cancelled", StringComparison.Ordinal) ? _rollDetail : $"cancelled after {elapsed:0.0} s");
        }

        return plan.Rolling
            ? new RollProgress(plan.Id, "rolling", plan.Originals.Length, rolled, plan.Current is null ? null : RollPlan.AddressOf(plan.Current), elapsed, _rollDetail)
            : new RollProgress(plan.Id, "done", plan.Originals.Length, plan.Originals.Length, null, elapsed, $"rolled {plan.Originals.Length} nodes in {elapsed:0.0} s");
    }

    [LoggerMessage(EventId = 5420, Level = LogLevel.Information, Message = "Fleet roll {Id}: started, {Count} proxy nodes, one at a time")]
    private static partial void LogRollStarted(ILogger logger, string id, int count);

    [LoggerMessage(EventId = 5421, Level = LogLevel.Information, Message = "Fleet roll {Id}: {Detail}")]
    private static partial void LogRollStep(ILogger logger, string id, string detail);

    [LoggerMessage(EventId = 5422, Level = LogLevel.Information, Message = "Fleet roll {Id}: done, {Count} nodes rolled in {Seconds:0.0} s")]
    private static partial void LogRollDone(ILogger logger, string id, int count, double seconds);

    [LoggerMessage(EventId = 5424, Level = LogLevel.Information, Message = "Fleet roll {Id}: {Detail} (pbm fleet roll cancel)")]
    private static partial void LogRollCancelled(ILogger logger, string id, string detail);

    [LoggerMessage(EventId = 5423, Level = LogLevel.Information, Message = "Fleet roll {Id}: resumed from the fleet's replicated plan (current {Current})")]
    private static partial void LogRollResumed(ILogger logger, string id, string current);
}
