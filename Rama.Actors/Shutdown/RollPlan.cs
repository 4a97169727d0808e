using System.Text.Json;

namespace Rama.Actors.Shutdown;

/// <summary>
/// A roll's progress as the coordinator keeps it in Akka.DistributedData (an <c>LWWRegister</c> of this record as
/// JSON, written with write-majority before every step), so a coordinator that starts on another node, because the
/// singleton moved with the node being rolled, carries on from it. Nodes are <c>address#uid</c>: a node restarted at
/// the same address is a new incarnation, so it counts as rolled.
/// </summary>
/// <param name="Id">The roll's id (its start time), for the operator.</param>
/// <param name="Started">When <c>pbm fleet roll</c> started it.</param>
/// <param name="Originals">The proxy nodes serving when it started; each is rolled once.</param>
/// <param name="Target">How many proxy nodes must serve before the next one leaves (the count at the start, N): so never fewer than N-1 serve.</param>
/// <param name="Current">The node told to drain and leave, until it is gone and N serve again; null between steps.</param>
/// <param name="Finished">When the last node's replacement served, or when the roll was cancelled; null while rolling.</param>
/// <param name="Cancelled">Stopped by <c>pbm fleet roll cancel</c> before every node was rolled.</param>
internal sealed record RollPlan(string Id, DateTimeOffset Started, string[] Originals, int Target, string? Current, DateTimeOffset? Finished, bool Cancelled = false)
{
    /// <summary>The key of the register in Akka.DistributedData.</summary>
    public const string Key = "rama-fleet-roll";

    public bool Rolling => Finished is null;

    public string ToJson() => JsonSerializer.Serialize(this);

    public static RollPlan? FromJson(string? json) => string.IsNullOrEmpty(json) ? null : JsonSerializer.Deserialize<RollPlan>(json);

    /// <summary>One node's name in a plan: its address and the incarnation's uid.</summary>
    public static string NodeId(Akka.Cluster.UniqueAddress node) => $"{node.Address}#{node.Uid}";

    /// <summary>The address part of <see cref="NodeId"/>.</summary>
    public static string AddressOf(string nodeId) => nodeId[..nodeId.LastIndexOf('#')];
}

/// <summary>What the coordinator does next in a roll: a pure function of the plan and the membership, tested on its own.</summary>
internal static class RollStep
{
    /// <summary>The next move.</summary>
    /// <param name="Kind"><c>wait</c>, <c>drain</c> (tell <see cref="Node"/> to drain; write the plan with it as current first), <c>step-done</c> (the current node is gone and N serve again) or <c>done</c>.</param>
    internal sealed record Decision(string Kind, string? Node, string Detail);

    /// <summary>
    /// Decides from <paramref name="plan"/>, the proxy incarnations in the membership (<paramref name="present"/>), those
    /// serving (<paramref name="serving"/>) and the coordinator's own node (rolled last, so the singleton moves once).
    /// </summary>
    public static Decision Next(RollPlan plan, IReadOnlySet<string> present, IReadOnlySet<string> serving, string self)
    {
        if (plan.Current is { } current)
        {
            if (present.Contains(current))
            {
                // Told to drain (again each tick while it still serves: the tell may have been lost with a moving coordinator).
                return serving.Contains(current)
                    ? new Decision("drain", current, $"asking {RollPlan.AddressOf(current)} to drain")
                    : new Decision("wait", current, $"{RollPlan.AddressOf(current)} drains and leaves");
            }

            return serving.Count >= plan.Target
                ? new Decision("step-done", current, $"{RollPlan.AddressOf(current)} rolled; {serving.Count} serving")
                : new Decision("wait", current, $"waiting for {plan.Target} serving nodes ({serving.Count} now): {RollPlan.AddressOf(current)} or its replacement");
        }

        var pending = plan.Originals.Where(present.Contains).ToList();
        if (pending.Count == 0)
        {
            return serving.Count >= plan.Target
                ? new Decision("done", null, $"rolled {plan.Originals.Length} nodes")
                : new Decision("wait", null, $"waiting for {plan.Target} serving nodes ({serving.Count} now)");
        }

        if (serving.Count < plan.Target)
        {
            return new Decision("wait", null, $"waiting for {plan.Target} serving nodes ({serving.Count} now) before the next");
        }

        // Ordered by address, the coordinator's own node last.
        var next = pending.OrderBy(p => p == self ? 1 : 0).ThenBy(p => p, StringComparer.Ordinal).First();
        return new Decision("drain", next, $"asking {RollPlan.AddressOf(next)} to drain");
    }
}
