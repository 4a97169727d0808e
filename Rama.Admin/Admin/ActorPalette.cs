using System.Globalization;
using Akka.Actor;

namespace Rama.Admin.Admin;

/// <summary>
/// <c>pbm actor hierarchy</c>: the actors under <c>/user</c> and <c>/system</c>, walked from the guardians through
/// <see cref="ActorRefWithCell.Children"/> (an immutable snapshot of each cell's children), bounded in depth and count.
/// </summary>
internal sealed class ActorPalette(ActorSystem system) : IAdminPalette
{
    /// <summary>Deepest level listed (the guardians are 0).</summary>
    internal const int MaxDepth = 12;

    /// <summary>Most actors listed; the rest are counted.</summary>
    internal const int MaxActors = 2000;

    public string Name => "actor";

    public string Description => "The actors of this node";

    public IReadOnlyList<AdminCommandInfo> Commands { get; } =
    [
        new("hierarchy", "", "The actor tree under /user and /system (bounded: 12 levels, 2000 actors)"),
    ];

    public async ValueTask<int> ExecuteAsync(AdminRequest request, IAdminResponse response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(response);
        var extended = (ExtendedActorSystem)system;
        var rows = new List<IReadOnlyList<string>>();
        var skipped = 0;
        void Walk(IActorRef actor, int depth)
        {
            if (rows.Count >= MaxActors)
            {
                skipped++;
                return;
            }

            var type = actor is ActorRefWithCell { Underlying: { } cell } ? cell.Props?.Type?.Name ?? "" : "";
            rows.Add([new string(' ', depth * 2) + (depth == 0 ? actor.Path.ToStringWithoutAddress() : actor.Path.Name), actor.Path.ToStringWithoutAddress(), type]);
            if (actor is not ActorRefWithCell withCell)
            {
                return;
            }

            var children = withCell.Children.OrderBy(c => c.Path.Name, StringComparer.Ordinal).ToList();
            if (depth + 1 > MaxDepth)
            {
                skipped += children.Count;
                return;
            }

            foreach (var child in children)
            {
                Walk(child, depth + 1);
            }
        }

        Walk(extended.Guardian, 0);
        Walk(extended.SystemGuardian, 0);
        await response.TableAsync("actors", ["actor", "path", "type"], rows, cancellationToken).ConfigureAwait(false);
        await response.ValuesAsync(new Dictionary<string, string>
        {
            ["system"] = system.Name,
            ["listed"] = rows.Count.ToString(CultureInfo.InvariantCulture),
            ["notListed"] = skipped.ToString(CultureInfo.InvariantCulture),
        }, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }
}
