using System.Text;

namespace Rama.Proxy.Http.Routing;

/// <summary>
/// A cluster ready to serve: its destinations (sorted by id), its load-balancing policy and, for the hash policy, a ring
/// of virtual nodes. <see cref="Pick"/> chooses among the destinations available now, skipping those already tried.
/// </summary>
internal sealed class ClusterState
{
    /// <summary>Virtual nodes per destination on the hash ring: enough for an even split of keys (~10 % spread at 160), few enough to build at once.</summary>
    internal const int VirtualNodes = 160;

    private readonly DestinationState[] _destinations;
    private readonly (ulong Hash, int Index)[] _ring;
    private readonly HashKey? _hashKey;
    private readonly TimeProvider _time;
    private int _roundRobin = -1;

    public ClusterState(ClusterOptions options, IReadOnlyList<DestinationState> destinations, TimeProvider time)
    {
        Options = options;
        _time = time;
        _destinations = [.. destinations.OrderBy(d => d.Id, StringComparer.Ordinal)];
        _hashKey = options.HashOn is { } on && HashKey.TryParse(on, out var key) ? key : null;
        _ring = options.LoadBalancingPolicy == LoadBalancingPolicy.Hash ? BuildRing(_destinations) : [];
        WindowTicks = ToTimestamp(options.HealthCheck.Passive.Window);
        ReactivationTicks = ToTimestamp(options.HealthCheck.Passive.ReactivationPeriod);
    }

    public ClusterOptions Options { get; }

    public string Id => Options.ClusterId;

    public IReadOnlyList<DestinationState> Destinations => _destinations;

    public TimeProvider Time => _time;

    internal long WindowTicks { get; }

    internal long ReactivationTicks { get; }

    private long ToTimestamp(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    /// <summary>How many destinations one request may try.</summary>
    public int MaxAttempts => Math.Min(Options.MaxAttempts, _destinations.Length);

    /// <summary>Records a forwarding failure of <paramref name="destination"/> (passive health); true when it ejected it.</summary>
    public bool ReportFailure(DestinationState destination)
    {
        var passive = Options.HealthCheck.Passive;
        return passive.Enabled && destination.ReportFailure(_time.GetTimestamp(), WindowTicks, passive.MaxFailures, ReactivationTicks);
    }

    /// <summary>
    /// The destination for <paramref name="request"/> by the cluster's policy among the available ones not in
    /// <paramref name="tried"/>; null when none is left.
    /// </summary>
    public DestinationState? Pick(HttpRequest request, IReadOnlyCollection<DestinationState>? tried = null)
    {
        var now = _time.GetTimestamp();
        Span<int> available = _destinations.Length <= 64 ? stackalloc int[_destinations.Length] : new int[_destinations.Length];
        var count = 0;
        for (var i = 0; i < _destinations.Length; i++)
        {
            if (_destinations[i].IsAvailable(now) && (tried is null || !tried.Contains(_destinations[i])))
            {
                available[count++] = i;
            }
        }

        if (count == 0)
        {
            return null;
        }

        available = available[..count];
        return Options.LoadBalancingPolicy switch
        {
            LoadBalancingPolicy.RoundRobin => _destinations[available[(int)((uint)Interlocked.Increment(ref _roundRobin) % (uint)count)]],
            LoadBalancingPolicy.LeastRequests => LeastRequests(available),
            LoadBalancingPolicy.Random => _destinations[available[System.Random.Shared.Next(count)]],
            LoadBalancingPolicy.FirstAlphabetical => _destinations[available[0]],
            LoadBalancingPolicy.Hash when _hashKey?.ValueOf(request) is { } value => ByHash(value, now, tried),
            _ => PowerOfTwo(available),
        };
    }

    private DestinationState LeastRequests(ReadOnlySpan<int> available)
    {
        var best = _destinations[available[0]];
        foreach (var index in available[1..])
        {
            if (_destinations[index].InFlight < best.InFlight)
            {
                best = _destinations[index];
            }
        }

        return best;
    }

    private DestinationState PowerOfTwo(ReadOnlySpan<int> available)
    {
        if (available.Length == 1)
        {
            return _destinations[available[0]];
        }

        var a = System.Random.Shared.Next(available.Length);
        var b = System.Random.Shared.Next(available.Length - 1);
        b = b >= a ? b + 1 : b; // two different ones
        var first = _destinations[available[a]];
        var second = _destinations[available[b]];
        return second.InFlight < first.InFlight ? second : first;
    }

    // Consistent hashing (Karger et al.): the key's point on the ring, then clockwise to the first destination that is
    // available and not yet tried. A destination going out moves only its own keys; they come back when it returns.
    private DestinationState? ByHash(string value, long now, IReadOnlyCollection<DestinationState>? tried)
    {
        var point = Hash(value);
        var start = Array.BinarySearch(_ring, (point, int.MinValue), RingComparer.Instance);
        start = start < 0 ? ~start : start;
        for (var step = 0; step < _ring.Length; step++)
        {
            var destination = _destinations[_ring[(start + step) % _ring.Length].Index];
            if (destination.IsAvailable(now) && (tried is null || !tried.Contains(destination)))
            {
                return destination;
            }
        }

        return null;
    }

    private static (ulong, int)[] BuildRing(DestinationState[] destinations)
    {
        var ring = new (ulong, int)[destinations.Length * VirtualNodes];
        for (var i = 0; i < destinations.Length; i++)
        {
            for (var v = 0; v < VirtualNodes; v++)
            {
                // Points from the destination's id, not its position: adding or removing one leaves the others' points alone.
                ring[(i * VirtualNodes) + v] = (Hash(destinations[i].Id + "#" + v.ToString(System.Globalization.CultureInfo.InvariantCulture)), i);
            }
        }

        Array.Sort(ring, RingComparer.Instance);
        return ring;
    }

    /// <summary>FNV-1a 64 of the UTF-8 bytes, then a murmur3 finaliser (FNV alone clusters short keys on the ring).</summary>
    internal static ulong Hash(string value)
    {
        var hash = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            hash = (hash ^ b) * 1099511628211UL;
        }

        hash ^= hash >> 33;
        hash *= 0xff51afd7ed558ccdUL;
        hash ^= hash >> 33;
        hash *= 0xc4ceb9fe1a85ec53UL;
        hash ^= hash >> 33;
        return hash;
    }

    private sealed class RingComparer : IComparer<(ulong Hash, int Index)>
    {
        public static readonly RingComparer Instance = new();

        public int Compare((ulong Hash, int Index) x, (ulong Hash, int Index) y) =>
            x.Hash != y.Hash ? x.Hash.CompareTo(y.Hash) : x.Index.CompareTo(y.Index);
    }
}
