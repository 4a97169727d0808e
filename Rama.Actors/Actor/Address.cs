namespace Rama.Actors.Actor;

/// <summary>
/// Where an actor system lives: <c>rama://system</c> for the local system,
/// <c>rama://system@host:port</c> once it is reachable from other nodes (Akka's <c>Address</c>).
/// </summary>
public sealed record Address(string Protocol, string System, string? Host = null, int? Port = null)
{
    /// <summary>The protocol of every Rama address.</summary>
    public const string DefaultProtocol = "rama";

    /// <summary>True when the address carries no host: it names a system in this process only.</summary>
    public bool HasLocalScope => Host is null;

    /// <summary>The local address of a system.</summary>
    public static Address Local(string system) => new(DefaultProtocol, system);

    public override string ToString() => Host is null
        ? $"{Protocol}://{System}"
        : Port is null ? $"{Protocol}://{System}@{Host}" : $"{Protocol}://{System}@{Host}:{Port}";

    /// <summary>Parses <c>protocol://system[@host[:port]]</c>.</summary>
    public static Address Parse(string text)
    {
        if (!TryParse(text, out var address))
        {
            throw new FormatException($"'{text}' is not an actor system address.");
        }

        return address;
    }

    public static bool TryParse(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Address? address)
    {
        address = null;
        var schemeEnd = text.IndexOf("://", StringComparison.Ordinal);
        if (schemeEnd <= 0)
        {
            return false;
        }

        var protocol = text[..schemeEnd];
        var rest = text[(schemeEnd + 3)..];
        var at = rest.IndexOf('@');
        if (at < 0)
        {
            if (rest.Length == 0)
            {
                return false;
            }

            address = new Address(protocol, rest);
            return true;
        }

        var system = rest[..at];
        var hostPort = rest[(at + 1)..];
        if (system.Length == 0 || hostPort.Length == 0)
        {
            return false;
        }

        // An IPv6 host is bracketed ([::1]:4053); the port follows the last colon after the bracket.
        var colon = hostPort.LastIndexOf(':');
        if (colon > 0 && colon > hostPort.LastIndexOf(']'))
        {
            if (!int.TryParse(hostPort.AsSpan(colon + 1), out var port) || port is < 0 or > 65535)
            {
                return false;
            }

            address = new Address(protocol, system, hostPort[..colon], port);
            return true;
        }

        address = new Address(protocol, system, hostPort);
        return true;
    }
}
