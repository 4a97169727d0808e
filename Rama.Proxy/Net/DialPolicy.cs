using System.Net;
using System.Net.Sockets;
using Rama.Proxy.Net.Destinations;

namespace Rama.Proxy.Net;

/// <summary>
/// The rules every outbound dial applies to a resolved address list, shared by <see cref="TcpConnector"/> (async
/// sockets) and the epoll reverse proxy (non-blocking connects on its loop), so they cannot drift: the addresses are
/// tried in the resolver's order within one connect timeout, an address the egress policy refuses is skipped (and is
/// the answer only when no other address was tried), and a failed connect moves on to the next address.
/// </summary>
internal static class DialPolicy
{
    /// <summary>The failure when the name resolved to no address.</summary>
    public static ConnectResult NoAddress(string host) => ConnectResult.Failure(ConnectError.NameNotResolved, $"{host} does not resolve");

    /// <summary>The failure before any address was tried (all were refused by policy, or there were none).</summary>
    public static ConnectResult NothingTried => ConnectResult.Failure(ConnectError.Failed, "no usable address");

    /// <summary>
    /// The index of the next address at or after <paramref name="from"/> that <paramref name="options"/> allows, or -1 when
    /// none is left; each refused address on the way replaces <paramref name="last"/> with a <see cref="ConnectError.NotAllowed"/>.
    /// </summary>
    public static int NextAllowed(IPAddress[] addresses, int from, TcpConnectorOptions options, ref ConnectResult last)
    {
        for (var i = from; i < addresses.Length; i++)
        {
            if (options.AllowDestination is not { } allow || allow(addresses[i]))
            {
                return i;
            }

            last = ConnectResult.Failure(ConnectError.NotAllowed, $"{addresses[i]} is not an allowed destination");
        }

        return -1;
    }

    /// <summary>
    /// The addresses of <paramref name="target"/> that <paramref name="rules"/> allow, in the resolver's order. When none is,
    /// <paramref name="denied"/> is the first denial (<see cref="ConnectError.NotAllowed"/>, its text naming the rule), also
    /// set in <paramref name="extensions"/> as <see cref="DestinationDenied"/> for the answer to the client.
    /// </summary>
    public static IPAddress[] Permitted(IPAddress[] addresses, HostPort target, Core.Extensions? extensions, DestinationPolicy rules, out ConnectResult denied)
    {
        denied = NothingTried;
        var user = extensions?.Get<Core.ProxyUser>()?.Name;
        List<IPAddress>? allowed = null; // null while every address so far is allowed
        DestinationQuery firstDenied = default;
        string? firstRule = null;
        for (var i = 0; i < addresses.Length; i++)
        {
            var query = new DestinationQuery(target.Host, addresses[i], target.Port, user);
            var verdict = rules.Check(query);
            if (verdict.Allowed)
            {
                allowed?.Add(addresses[i]);
            }
            else if (allowed is null)
            {
                (firstDenied, firstRule) = (query, verdict.Rule ?? "");
                allowed = [.. addresses.AsSpan(0, i)];
            }
        }

        if (allowed is null)
        {
            return addresses;
        }

        if (allowed.Count == 0)
        {
            denied = Denied(firstDenied, firstRule!, extensions);
        }

        return [.. allowed];
    }

    /// <summary>The refusal of <paramref name="target"/> by a rule that decides on its name and port alone (<see cref="DestinationPolicy.DeniedByName"/>), before resolving it.</summary>
    public static bool DeniedByName(HostPort target, Core.Extensions? extensions, DestinationPolicy rules, out ConnectResult denied)
    {
        var query = new DestinationQuery(target.Host, null, target.Port, extensions?.Get<Core.ProxyUser>()?.Name);
        if (target.Address is null && rules.DeniedByName(query) is { Rule: { } rule })
        {
            denied = Denied(query, rule, extensions);
            return true;
        }

        denied = default;
        return false;
    }

    private static ConnectResult Denied(in DestinationQuery query, string rule, Core.Extensions? extensions)
    {
        var text = DestinationPolicy.Describe(query, rule);
        extensions?.Set(new DestinationDenied(query, rule, text));
        return ConnectResult.Failure(ConnectError.NotAllowed, text);
    }
    /// <summary>A TCP socket for <paramref name="address"/> with the connector's socket options.</summary>
    public static Socket CreateSocket(IPAddress address, TcpConnectorOptions options, bool blocking = true) =>
        new(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = options.NoDelay, Blocking = blocking };

    /// <summary>The failure of one address's connect.</summary>
    public static ConnectResult Failed(IPAddress address, int port, SocketError error) =>
        ConnectResult.Failure(Classify(error), $"{address}:{port}: {error}");

    public static ConnectError Classify(SocketError error) => error switch
    {
        SocketError.ConnectionRefused => ConnectError.Refused,
        SocketError.TimedOut => ConnectError.TimedOut,
        SocketError.HostUnreachable or SocketError.HostDown or SocketError.HostNotFound => ConnectError.HostUnreachable,
        SocketError.NetworkUnreachable or SocketError.NetworkDown => ConnectError.NetworkUnreachable,
        SocketError.AccessDenied => ConnectError.NotAllowed,
        _ => ConnectError.Failed,
    };
}
