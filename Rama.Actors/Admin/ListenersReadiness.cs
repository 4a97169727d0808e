using Akka.Actor;
using Akka.Hosting;
using Rama.Actors.Hosting;
using Rama.Actors.Listeners;
using Rama.Admin.Admin;

namespace Rama.Actors.Admin;

/// <summary>
/// <c>/readyz</c> on a proxy node: every listener is bound and none drains, as the listener supervisor reports them (it
/// answers at once, also while draining).
/// </summary>
internal sealed class ListenersReadiness(IRequiredActor<ProxyListeners> listeners) : IReadinessCheck
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(2);

    public async ValueTask<string?> NotReadyReasonAsync(CancellationToken cancellationToken)
    {
        ListenersStatus status;
        try
        {
            var supervisor = await listeners.GetAsync(cancellationToken).ConfigureAwait(false);
            status = await supervisor.Ask<ListenersStatus>(GetListenerStatus.Instance, AskTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (AskTimeoutException)
        {
            return "the listener supervisor did not answer";
        }

        if (status.Draining)
        {
            return "draining: the listeners are closing";
        }

        foreach (var listener in status.Listeners)
        {
            if (!listener.Bound || listener.Draining)
            {
                return $"listener '{listener.Name}' ({listener.Endpoint}) is {(listener.Draining ? "draining" : "not bound")}";
            }
        }

        return null;
    }
}
