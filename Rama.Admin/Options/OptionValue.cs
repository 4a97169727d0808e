using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;

namespace Rama.Admin.Options;

/// <summary>
/// The values an option takes: <see cref="TryNormalize"/> accepts a text (from a file, the environment or the command
/// line) and returns its canonical form, or fails; <see cref="Allowed"/> says what is allowed, for the message that
/// refuses a bad value. Pure: no file is created, no socket bound.
/// </summary>
public abstract class OptionValue
{
    /// <summary>What is allowed, as the end of "is 'x': allowed ..." (e.g. "are default, reject").</summary>
    public abstract string Allowed { get; }

    public abstract bool TryNormalize(string text, [NotNullWhen(true)] out string? value);

    /// <summary>Any non-empty text.</summary>
    public static OptionValue Text { get; } = new TextValue();

    /// <summary><c>true</c> or <c>false</c>.</summary>
    public static OptionValue Boolean { get; } = new ChoiceValue(["true", "false"], []);

    /// <summary><c>ip:port</c> with an explicit port (0 picks a free one): <c>127.0.0.1:8080</c>, <c>[::1]:8080</c>.</summary>
    public static OptionValue Endpoint { get; } = new EndpointValue();

    /// <summary><c>host:port</c> with a port from 1 to 65535.</summary>
    public static OptionValue HostAndPort { get; } = new HostPortValue();

    /// <summary><c>user:password</c> with a non-empty user.</summary>
    public static OptionValue Credential { get; } = new CredentialValue();

    /// <summary>A network in CIDR notation (<c>10.0.0.0/8</c>) or one address.</summary>
    public static OptionValue Network { get; } = new NetworkValue();

    /// <summary>A file that exists (checked, never created).</summary>
    public static OptionValue ExistingFile { get; } = new FileValue();

    /// <summary>A whole number from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public static OptionValue Integer(long min, long max) => new IntegerValue(min, max);

    /// <summary>A duration from <paramref name="min"/> to <paramref name="max"/>: seconds (<c>5</c>, <c>0.5</c>) or <c>hh:mm:ss</c>; normalised to <c>hh:mm:ss</c>.</summary>
    public static OptionValue Duration(TimeSpan min, TimeSpan max) => new DurationValue(min, max);

    /// <summary>One of <paramref name="names"/> (case-insensitive, normalised to the name as given here); <paramref name="aliases"/> map other spellings to a name.</summary>
    public static OptionValue Choice(string[] names, params (string Alias, string Name)[] aliases) => new ChoiceValue(names, aliases);

    /// <summary>A text matching <paramref name="pattern"/> (anchored), described by <paramref name="allowed"/>.</summary>
    public static OptionValue Pattern(string pattern, string allowed) => new PatternValue(new System.Text.RegularExpressions.Regex("^(?:" + pattern + ")$", System.Text.RegularExpressions.RegexOptions.CultureInvariant), allowed);

    /// <summary>The names of <typeparamref name="TEnum"/> in lower case.</summary>
    public static OptionValue Enum<TEnum>() where TEnum : struct, System.Enum =>
        new ChoiceValue([.. System.Enum.GetNames<TEnum>().Select(n => n.ToLowerInvariant())], []);

    /// <summary>Parses <c>ip:port</c> with an explicit port.</summary>
    public static bool TryParseEndpoint(string text, [NotNullWhen(true)] out IPEndPoint? endpoint)
    {
        // An explicit port is required (0 picks one); IPEndPoint alone would read "127.0.0.1" as port 0.
        endpoint = null;
        var colon = text.LastIndexOf(':');
        var hasPort = colon > 0 && colon < text.Length - 1 && text[(colon + 1)..].All(char.IsAsciiDigit) && (text[0] != '[' || text[colon - 1] == ']');
        return hasPort && IPEndPoint.TryParse(text, out endpoint);
    }

    /// <summary>Parses a duration: seconds as a number, or a <see cref="TimeSpan"/> (<c>00:00:05</c>).</summary>
    public static bool TryParseDuration(string text, out TimeSpan duration)
    {
        text = text.Trim();
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && double.IsFinite(seconds) && Math.Abs(seconds) < TimeSpan.MaxValue.TotalSeconds)
        {
            duration = TimeSpan.FromSeconds(seconds);
            return true;
        }

        return TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out duration);
    }

    private sealed class TextValue : OptionValue
    {
        public override string Allowed => "is any non-empty text";

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            value = string.IsNullOrWhiteSpace(text) ? null : text;
            return value is not null;
        }
    }

    private sealed class PatternValue(System.Text.RegularExpressions.Regex regex, string allowed) : OptionValue
    {
        public override string Allowed => allowed;

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            value = regex.IsMatch(text) ? text : null;
            return value is not null;
        }
    }

    private sealed class ChoiceValue(string[] names, (string Alias, string Name)[] aliases) : OptionValue
    {
        public override string Allowed => "are " + string.Join(", ", names);

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            text = text.Trim();
            value = names.FirstOrDefault(n => n.Equals(text, StringComparison.OrdinalIgnoreCase))
                ?? aliases.Where(a => a.Alias.Equals(text, StringComparison.OrdinalIgnoreCase)).Select(a => a.Name).FirstOrDefault();
            return value is not null;
        }
    }

    private sealed class EndpointValue : OptionValue
    {
        public override string Allowed => "is an ip:port (127.0.0.1:8080, [::1]:8080; port 0 picks a free port)";

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            value = TryParseEndpoint(text.Trim(), out var endpoint) ? endpoint.ToString() : null;
            return value is not null;
        }
    }

    private sealed class HostPortValue : OptionValue
    {
        public override string Allowed => "is a host:port with a port from 1 to 65535 (127.0.0.1:8000, origin.internal:443)";

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            text = text.Trim();
            value = null;
            var colon = text.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                return false;
            }

            var host = text[..colon];
            var bracketed = host.StartsWith('[') && host.EndsWith(']');
            var valid = bracketed ? IPAddress.TryParse(host[1..^1], out _) : Uri.CheckHostName(host) is UriHostNameType.Dns or UriHostNameType.IPv4;
            value = valid ? text : null;
            return valid;
        }
    }

    private sealed class CredentialValue : OptionValue
    {
        public override string Allowed => "is user:password";

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            value = text.IndexOf(':', StringComparison.Ordinal) > 0 ? text : null;
            return value is not null;
        }
    }

    private sealed class NetworkValue : OptionValue
    {
        public override string Allowed => "is a CIDR (10.0.0.0/8) or an address";

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            text = text.Trim();
            value = IPNetwork.TryParse(text, out _) || IPAddress.TryParse(text, out _) ? text : null;
            return value is not null;
        }
    }

    private sealed class FileValue : OptionValue
    {
        public override string Allowed => "is the path of an existing file";

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            value = !string.IsNullOrWhiteSpace(text) && File.Exists(text) ? text : null;
            return value is not null;
        }
    }

    private sealed class IntegerValue(long min, long max) : OptionValue
    {
        public override string Allowed => string.Create(CultureInfo.InvariantCulture, $"is a whole number from {min} to {max}");

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            value = long.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
                ? n.ToString(CultureInfo.InvariantCulture)
                : null;
            return value is not null;
        }
    }

    private sealed class DurationValue(TimeSpan min, TimeSpan max) : OptionValue
    {
        public override string Allowed => string.Create(CultureInfo.InvariantCulture,
            $"is a duration from {min.TotalSeconds} to {max.TotalSeconds} s, as seconds (5, 0.5) or hh:mm:ss (00:00:05)");

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            value = TryParseDuration(text, out var duration) && duration >= min && duration <= max
                ? duration.ToString("c", CultureInfo.InvariantCulture)
                : null;
            return value is not null;
        }
    }
}
