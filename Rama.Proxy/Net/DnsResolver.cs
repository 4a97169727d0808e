using System.Net;
using System.Net.Sockets;

namespace Rama.Proxy.Net;

/// <summary>Resolves host names to addresses.</summary>
public interface IDnsResolver
{
    /// <summary>Resolves <paramref name="host"/>; an empty array means the name does not resolve.</summary>
    ValueTask<IPAddress[]> ResolveAsync(string host, CancellationToken cancellationToken);
}

/// <summary>Options of <see cref="DnsResolver"/>.</summary>
public sealed record DnsResolverOptions
{
    /// <summary>Fixed answers, checked first (case-insensitive): like /etc/hosts for the proxy only.</summary>
    public IReadOnlyDictionary<string, IPAddress[]> Overrides { get; init; } = new Dictionary<string, IPAddress[]>(StringComparer.OrdinalIgnoreCase);

    /// <summary>Longest a lookup may take. Default 5 s (glibc's resolv.conf default timeout).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// The system resolver with overrides. RFC 6761 §6.4: names under <c>.invalid</c> never resolve,
/// answered here without a query; §6.3: <c>localhost</c> names are loopback.
/// </summary>
public sealed class DnsResolver(DnsResolverOptions? options = null) : IDnsResolver
{
    private readonly DnsResolverOptions _options = options ?? new DnsResolverOptions();

    public async ValueTask<IPAddress[]> ResolveAsync(string host, CancellationToken cancellationToken)
    {
        if (IPAddress.TryParse(host, out var literal))
        {
            return [literal];
        }

        var name = host.TrimEnd('.');
        if (_options.Overrides.TryGetValue(name, out var fixedAnswer))
        {
            return fixedAnswer;
        }

        if (name.Equals("invalid", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".invalid", StringComparison.OrdinalIgnoreCase))
        {
            return [];
        }

        if (name.Equals("localhost", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase))
        {
            return [IPAddress.Loopback, IPAddress.IPv6Loopback];
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.Timeout);
        try
        {
            return await Dns.GetHostAddressesAsync(name, timeout.Token).ConfigureAwait(false);
        }
        catch (SocketException)
        {
            return [];
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"DNS lookup of '{name}' took longer than {_options.Timeout.TotalSeconds:0.#} s");
        }
    }
}
