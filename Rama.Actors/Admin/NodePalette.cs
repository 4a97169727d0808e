using System.Globalization;
using Akka.Actor;
using Akka.Hosting;
using Rama.Actors.Hosting;
using Rama.Actors.Listeners;
using Rama.Admin.Admin;

namespace Rama.Actors.Admin;

/// <summary>
/// <c>pbm node status</c>: this node's listeners as their supervisor reports them (it answers at once, also while
/// draining), whether the node drains, and how long its actor system has run.
/// </summary>
internal sealed class NodePalette(ActorSystem system, IRequiredActor<ProxyListeners> listeners) : IAdminPalette
{
    /// <summary>How long <c>status</c> waits for the listener supervisor (Akka's ask timeout).</summary>
    internal static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);

    public string Name => "node";

    public string Description => "This proxy node: its listeners and whether it drains";

    public IReadOnlyList<AdminCommandInfo> Commands { get; } =
    [
        new("status", "", "Listeners (name, endpoint, bound, draining, open and accepted connections), draining yes/no, uptime"),
    ];

    public async ValueTask<int> ExecuteAsync(AdminRequest request, IAdminResponse response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(response);
        ListenersStatus status;
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            timeout.CancelAfter(AskTimeout);
            try
            {
                var supervisor = await listeners.GetAsync(timeout.Token).ConfigureAwait(false);
                status = await supervisor.Ask<ListenersStatus>(GetListenerStatus.Instance, AskTimeout, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is OperationCanceledException or AskTimeoutException)
            {
                return await response.FailAsync($"the listener supervisor did not answer within {AskTimeout.TotalSeconds:0} s (is this a proxy node?)", cancellationToken: cancellationToken).ConfigureAwait(false);
            }
        }

        var rows = status.Listeners
            .Select(l => (IReadOnlyList<string>)
            [
                l.Name,
                l.Endpoint,
                l.Bound ? "yes" : "no",
                l.Draining ? "yes" : "no",
                l.OpenConnections.ToString(CultureInfo.InvariantCulture),
                l.AcceptedConnections.ToString(CultureInfo.InvariantCulture),
            ])
            .ToList();
        await response.TableAsync("listeners", ["name", "endpoint", "bound", "draining", "open", "accepted"], rows, cancellationToken).ConfigureAwait(false);
        var uptime = system.Uptime;
        await response.ValuesAsync(new Dictionary<string, string>
        {
            ["system"] = system.Name,
            ["draining"] = status.Draining ? "yes" : "no",
            ["uptime"] = string.Create(CultureInfo.InvariantCulture, $"{(int)uptime.TotalHours:00}:{uptime.Minutes:00}:{uptime.Seconds:00}"),
            ["open"] = status.Listeners.Sum(l => l.OpenConnections).ToString(CultureInfo.InvariantCulture),
        }, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }
}
