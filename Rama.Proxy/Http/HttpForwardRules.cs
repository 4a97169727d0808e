using Rama.Proxy.Net;

namespace Rama.Proxy.Http;

/// <summary>
/// The rules every HTTP forwarder of Rama applies (<see cref="ForwardProxyService"/> on the pipes, the epoll reverse
/// proxy, the TLS termination and MITM paths through <see cref="ForwardProxyService"/>), in one place so that they
/// cannot drift apart.
/// </summary>
internal static class HttpForwardRules
{
    /// <summary>The forwarding outcome of a failed dial (the status follows from it): a refused destination is 403, a timeout 504, anything else 502.</summary>
    public static ForwardError ErrorFor(ConnectError error) => error switch
    {
        ConnectError.TimedOut => ForwardError.ConnectTimedOut,
        ConnectError.NotAllowed => ForwardError.NotAllowed,
        ConnectError.Busy => ForwardError.UpstreamBusy,
        _ => ForwardError.ConnectFailed,
    };
}
