using System.Net;
using Rama.Admin.Admin;
using Rama.Admin.Cluster;
using Rama.Admin.Options;
using Rama.Proxy.Net.Destinations;
using D = Rama.Actors.Options.NodeOptionDeclarations;

namespace Rama.Actors.Options;

/// <summary>When the secure default denials (loopback, link-local, the node's own ports) apply to a proxy listener.</summary>
public enum DestinationDefaults
{
    /// <summary>On a listener that is not bound to a loopback address (the default).</summary>
    Auto,
    /// <summary>On every proxy listener, loopback ones included.</summary>
    On,
    /// <summary>Never: only the configured rules.</summary>
    Off,
}

/// <summary>
/// The destination rules of the node's proxy listeners (<c>Rama:Destinations</c>): the configured <c>Rules</c> in their
/// order, then the <c>--allow</c> shorthands, then the <c>--deny</c> shorthands; the first rule that matches decides,
/// then the defaults (<see cref="Defaults"/>), else the destination is allowed.
/// </summary>
public sealed record DestinationNodeOptions
{
    public const string Section = "Rama:Destinations";

    public DestinationDefaults Defaults { get; init; } = DestinationDefaults.Auto;

    public IReadOnlyList<DestinationRule> Rules { get; init; } = [];

    /// <summary>Rule name of the default denial of the node's admin port on any address.</summary>
    public const string AdminPortRule = "admin-port";

    /// <summary>Rule name of the default denial of the node's cluster (Akka remoting) port on any address.</summary>
    public const string ClusterPortRule = "cluster-port";

    /// <summary>
    /// The policy of a proxy listener bound to <paramref name="bind"/>; null when nothing can be refused there (no rule,
    /// and a loopback listener under <see cref="DestinationDefaults.Auto"/>: today's behaviour).
    /// </summary>
    public DestinationPolicy? PolicyFor(IPEndPoint bind, AdminOptions admin, ClusterOptions cluster)
    {
        ArgumentNullException.ThrowIfNull(bind);
        ArgumentNullException.ThrowIfNull(admin);
        ArgumentNullException.ThrowIfNull(cluster);
        var defaults = Defaults == DestinationDefaults.On || (Defaults == DestinationDefaults.Auto && !IPAddress.IsLoopback(bind.Address));
        if (!defaults && Rules.Count == 0)
        {
            return null;
        }

        var ownPorts = new List<(int, string)>();
        if (admin.Bind.Port > 0)
        {
            ownPorts.Add((admin.Bind.Port, AdminPortRule));
        }

        if (cluster.Enabled && cluster.Bind.Port > 0)
        {
            ownPorts.Add((cluster.Bind.Port, ClusterPortRule));
        }

        return new DestinationPolicy(Rules, defaults, ownPorts);
    }

    /// <summary>Reads and validates <c>Rama:Destinations</c>; the problems are in <paramref name="reader"/>.</summary>
    public static DestinationNodeOptions Read(OptionsReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        reader.RefuseUnknownKeys(Section, ["Defaults", "Allow", "Deny", "Rules"], Section);
        var defaults = reader.Text(D.DestinationDefaultsOption) is { } text ? Enum.Parse<DestinationDefaults>(text, ignoreCase: true) : DestinationDefaults.Auto;
        var rules = new List<DestinationRule>();
        // Configuration children come in key order: 0, 1, 2, ... numerically (a list), names alphabetically.
        foreach (var child in reader.Configuration.GetSection(Section + ":Rules").GetChildren())
        {
            var entry = child.Key;
            reader.RefuseUnknownKeys(child.Path, ["Name", "Action", "Cidrs", "Hosts", "Ports", "Users"], "a destination rule");
            var action = reader.Text(D.DestinationRuleAction, D.DestinationRuleAction.KeyFor(entry));
            var rule = new DestinationRule
            {
                Name = reader.Text(D.DestinationRuleName, D.DestinationRuleName.KeyFor(entry)) ?? entry,
                Action = action == "allow" ? DestinationAction.Allow : DestinationAction.Deny,
                Cidrs = reader.List(D.DestinationRuleCidrs, D.DestinationRuleCidrs.KeyFor(entry)),
                Hosts = reader.List(D.DestinationRuleHosts, D.DestinationRuleHosts.KeyFor(entry)),
                Ports = reader.List(D.DestinationRulePorts, D.DestinationRulePorts.KeyFor(entry)),
                Users = reader.List(D.DestinationRuleUsers, D.DestinationRuleUsers.KeyFor(entry)),
            };
            rules.Add(rule);
        }

        foreach (var (option, action) in new[] { (D.Allow, DestinationAction.Allow), (D.Deny, DestinationAction.Deny) })
        {
            foreach (var shorthand in reader.List(option))
            {
                if (DestinationRule.TryParseShorthand(action, shorthand, out var rule))
                {
                    rules.Add(rule);
                }
            }
        }

        foreach (var duplicate in rules.GroupBy(r => r.Name, StringComparer.Ordinal).Where(g => g.Count() > 1))
        {
            reader.AddProblem($"{Section}:Rules: the rule name '{duplicate.Key}' is used {duplicate.Count()} times: names must be unique (they are what a refusal names)");
        }

        try
        {
            _ = new DestinationPolicy(rules, defaultDenials: true); // every CIDR, host pattern and port checked once, at start-up
        }
        catch (ArgumentException ex)
        {
            reader.AddProblem($"{Section}:Rules: {ex.Message}");
        }

        return new DestinationNodeOptions { Defaults = defaults, Rules = rules };
    }
}

/// <summary><c>[user@]destination[:port]</c>, the value of <c>--allow</c> and <c>--deny</c> (<see cref="DestinationRule.TryParseShorthand"/>).</summary>
internal sealed class DestinationShorthandValue : OptionValue
{
    public static readonly DestinationShorthandValue Instance = new();

    public override string Allowed => "is [user@]destination[:port]: an address or CIDR (10.0.0.0/8, [fe80::1]:22), a host pattern (*.internal), or :port; the port a port or range (25, 8000-8100)";

    public override bool TryNormalize(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? value)
    {
        value = DestinationRule.TryParseShorthand(DestinationAction.Deny, text, out _) ? text.Trim() : null;
        return value is not null;
    }
}
