using System.Globalization;
using System.Text;

namespace Rama.Proxy.Http.Http2;

/// <summary>
/// One PRIORITY frame (or HEADERS priority fields) a client sent before its first request, as the Akamai fingerprint
/// writes it: <c>StreamID:Exclusive:DependsOn:Weight</c>, the weight being the wire octet + 1 (1..256, §5.3.2 of RFC 7540).
/// </summary>
public readonly record struct Http2PriorityFrame(int StreamId, bool Exclusive, int DependsOn, int Weight, bool InHeaders)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{StreamId}:{(Exclusive ? 1 : 0)}:{DependsOn}:{Weight}");
}

/// <summary>
/// What a client's first HTTP/2 frames say about its implementation (Akamai, "Passive Fingerprinting of HTTP/2
/// Clients", Black Hat EU 2017): the first SETTINGS in order, the connection WINDOW_UPDATE increment, the PRIORITY
/// frames, and the pseudo-header order of the first HEADERS. Captured by the server up to the first HEADERS; each
/// request of the connection carries it in <see cref="HttpRequest.Extensions"/>.
/// </summary>
public sealed record Http2Fingerprint(IReadOnlyList<Http2Setting> Settings, int WindowUpdate, IReadOnlyList<Http2PriorityFrame> Priorities, string PseudoHeaderOrder)
{
    /// <summary>
    /// The Akamai string <c>S[;]|WU|P[,]|PS[,]</c>: settings as <c>id:value</c> joined by ';', the WINDOW_UPDATE
    /// increment (0 when none), PRIORITY frames joined by ',' (0 when none), pseudo-header letters joined by ','
    /// (m, a, s, p). Example (Chrome): <c>1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p</c>.
    /// </summary>
    public string Akamai => s_akamai.GetValue(this, static f => f.BuildAkamai()); // built once per connection: its every request logs it

    // Beside the record, not a field of it: record equality and `with` copies stay as they were (a copy gets its own string).
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Http2Fingerprint, string> s_akamai = [];

    private string BuildAkamai()
    {
        var text = new StringBuilder(96);
        text.AppendJoin(';', Settings).Append('|').Append(WindowUpdate.ToString(CultureInfo.InvariantCulture)).Append('|');
        var frames = Priorities.Where(p => !p.InHeaders).ToList();
        if (frames.Count == 0)
        {
            text.Append('0');
        }
        else
        {
            text.AppendJoin(',', frames);
        }

        text.Append('|').AppendJoin(',', PseudoHeaderOrder.Where(c => c != 't').Select(c => c.ToString()));
        return text.ToString();
    }

    public override string ToString() => Akamai;
}
