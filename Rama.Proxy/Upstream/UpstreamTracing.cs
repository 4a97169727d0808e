using System.Diagnostics;
using Rama.Proxy.Core;

namespace Rama.Proxy.Upstream;

/// <summary>The attributes of Rama's spans (<see cref="Observability.ProxyTracing"/>) that this folder's values carry: known once a request or tunnel was served.</summary>
internal static class UpstreamTracing
{
    /// <summary><c>rama.upstream</c> (the selected upstream proxy's id) and <c>rama.user</c> (the base user) from <paramref name="extensions"/>.</summary>
    internal static void TagOutcome(Activity activity, Extensions extensions)
    {
        if (extensions.Get<SelectedUpstream>() is { } upstream)
        {
            activity.SetTag("rama.upstream", upstream.Id);
        }

        // The base user: without the routing labels a username may carry (user-country-de-session-x -> user).
        var user = extensions.Get<ProxyUsername>()?.BaseUser ?? extensions.Get<ProxyUser>()?.Name;
        if (user is not null)
        {
            activity.SetTag("rama.user", user);
        }
    }
}
