using System.Collections.Concurrent;
using System.Numerics;
using System.Security.Cryptography;
using System.Text;

namespace Rama.Proxy.Upstream;

/// <summary>
/// The proxy database as selection sees it: an immutable, versioned set of upstream records.
/// Selection is a pure function of (filter, session, <see cref="Version"/>): two nodes holding the
/// same records compute the same version and pick the same upstream for a session without talking.
/// A fleet implementation (sharded write path, local read replica) replaces this interface.
/// </summary>
public interface IProxyDatabase
{
    /// <summary>Content version: a hash of the records (not a counter), equal on every node with the same records.</summary>
    string Version { get; }

    /// <summary>Number of records.</summary>
    int Count { get; }

    /// <summary>
    /// Up to <paramref name="maxCandidates"/> records that match <paramref name="filter"/> and can carry
    /// TCP, best first. With a <paramref name="session"/>: rendezvous (highest-random-weight) order over
    /// the matching set, so the first candidate is the session's upstream and removing another record
    /// never moves it. Without one: a random order. Empty when nothing matches.
    /// </summary>
    IReadOnlyList<UpstreamProxy> Select(ProxyFilter filter, string? session, int maxCandidates);

    /// <summary>How many records match <paramref name="filter"/> (and can carry TCP).</summary>
    int CountMatches(ProxyFilter filter);
}

/// <summary>Factories for the local, in-memory proxy database.</summary>
public static class ProxyDatabase
{
    public static IProxyDatabase Empty { get; } = new ProxyDatabaseSnapshot([]);

    /// <summary>An indexed snapshot of <paramref name="records"/> (ids must be unique, case-insensitive).</summary>
    public static IProxyDatabase Create(IEnumerable<UpstreamProxy> records) => new ProxyDatabaseSnapshot(records);

    /// <summary>Loads and indexes a CSV or JSON file; throws <see cref="ProxyDatabaseException"/> naming lines and fields.</summary>
    public static IProxyDatabase LoadFile(string path) => new ProxyDatabaseSnapshot(ProxyDatabaseLoader.LoadFile(path));

    public static IProxyDatabase Parse(string text) => new ProxyDatabaseSnapshot(ProxyDatabaseLoader.Parse(text));
}

/// <summary>
/// The local immutable snapshot. Records are sorted by id; each string field has an inverted index
/// (value -> posting, stored as a bitset when dense, as sorted indices when sparse) plus a bitset of
/// its wildcard records; flags are bitsets. A query ORs the postings of a field's values with the
/// field's wildcards, ANDs across fields, then walks the set bits: with a session, keeping the top
/// candidates by rendezvous score (one multiply-xorshift per match over precomputed id hashes).
/// Matching sets are cached per filter (bounded), so a repeated filter costs only the walk.
/// </summary>
internal sealed class ProxyDatabaseSnapshot : IProxyDatabase
{
    /// <summary>Matches kept in the per-filter cache, summed over filters (12 bytes each): bounds its memory at about 24 MB.</summary>
    private const long MaxCachedMatches = 2_000_000;
    private static readonly int FieldCount = Enum.GetValues<ProxyField>().Length;

    private readonly UpstreamProxy[] _records;
    private readonly ulong[] _idHashes;
    private readonly int _words;
    private readonly ulong[] _tcp;
    private readonly ulong[] _datacenter;
    private readonly ulong[] _residential;
    private readonly ulong[] _mobile;
    private readonly Dictionary<string, Posting>[] _postings;
    private readonly ulong[][] _wildcards;
    private readonly ConcurrentDictionary<ProxyFilter, MatchSet> _matches = new();
    private long _cachedMatches;

    /// <summary>The records matching one filter: their indices (ascending) and their id hashes, side by side so the rendezvous walk reads memory in order.</summary>
    internal sealed record MatchSet(int[] Indices, ulong[] Hashes);

    public ProxyDatabaseSnapshot(IEnumerable<UpstreamProxy> records)
    {
        _records = [.. records.OrderBy(r => r.Id, StringComparer.Ordinal)];
        var n = _records.Length;
        _words = (n + 63) / 64;
        _idHashes = new ulong[n];
        _tcp = new ulong[_words];
        _datacenter = new ulong[_words];
        _residential = new ulong[_words];
        _mobile = new ulong[_words];
        _wildcards = new ulong[FieldCount][];
        _postings = new Dictionary<string, Posting>[FieldCount];
        var lists = new Dictionary<string, List<int>>[FieldCount];
        for (var f = 0; f < FieldCount; f++)
        {
            _wildcards[f] = new ulong[_words];
            lists[f] = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        }

        var ids = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < n; i++)
        {
            var record = _records[i];
            if (!ids.Add(record.Id))
            {
                throw new ArgumentException($"duplicate upstream id '{record.Id}'", nameof(records));
            }

            _idHashes[i] = Rendezvous.Hash(record.Id);
            if (record.PreferredProtocol is not null)
            {
                Set(_tcp, i);
            }

            if (record.Datacenter)
            {
                Set(_datacenter, i);
            }

            if (record.Residential)
            {
                Set(_residential, i);
            }

            if (record.Mobile)
            {
                Set(_mobile, i);
            }

            for (var f = 0; f < FieldCount; f++)
            {
                var value = f == (int)ProxyField.Id ? record.Id.ToLowerInvariant() : ProxyFilter.Get(record, (ProxyField)f);
                if (value is null)
                {
                    continue;
                }

                if (value == UpstreamProxy.Wildcard && f != (int)ProxyField.Id)
                {
                    Set(_wildcards[f], i);
                    continue;
                }

                if (!lists[f].TryGetValue(value, out var list))
                {
                    lists[f][value] = list = [];
                }

                list.Add(i);
            }
        }

        for (var f = 0; f < FieldCount; f++)
        {
            _postings[f] = lists[f].ToDictionary(kv => kv.Key, kv => Posting.Create(kv.Value, _words), StringComparer.Ordinal);
        }

        Version = ComputeVersion(_records);
    }

    public string Version { get; }

    public int Count => _records.Length;

    public IReadOnlyList<UpstreamProxy> Records => _records;

    public int CountMatches(ProxyFilter filter) => Matching(filter).Indices.Length;

    public IReadOnlyList<UpstreamProxy> Select(ProxyFilter filter, string? session, int maxCandidates)
    {
        ArgumentNullException.ThrowIfNull(filter);
        var matches = Matching(filter);
        var k = Math.Min(Math.Max(maxCandidates, 0), matches.Indices.Length);
        if (k == 0)
        {
            return [];
        }

        return session is null ? RandomPick(matches.Indices, k) : RendezvousPick(matches, Rendezvous.Hash(session), k);
    }

    private UpstreamProxy[] RandomPick(int[] matches, int k)
    {
        var result = new UpstreamProxy[k];
        if (k == 1)
        {
            result[0] = _records[matches[Random.Shared.Next(matches.Length)]];
            return result;
        }

        // Partial Fisher-Yates over a copy of the first positions drawn.
        var drawn = new Dictionary<int, int>(k);
        for (var i = 0; i < k; i++)
        {
            var j = Random.Shared.Next(i, matches.Length);
            var atJ = drawn.TryGetValue(j, out var vj) ? vj : j;
            var atI = drawn.TryGetValue(i, out var vi) ? vi : i;
            drawn[j] = atI;
            result[i] = _records[matches[atJ]];
        }

        return result;
    }

    private UpstreamProxy[] RendezvousPick(MatchSet matches, ulong sessionHash, int k)
    {
        var salt = Rendezvous.Mix(sessionHash);
        var hashes = matches.Hashes;
        if (k == 1)
        {
            var best = 0;
            var bestScore = Rendezvous.Mix(hashes[0] ^ salt);
            for (var i = 1; i < hashes.Length; i++)
            {
                var score = Rendezvous.Mix(hashes[i] ^ salt);
                // Ties (practically never) go to the lower index: records are sorted by id, so this is deterministic.
                if (score > bestScore)
                {
                    best = i;
                    bestScore = score;
                }
            }

            return [_records[matches.Indices[best]]];
        }

        // Top-k by score, kept sorted descending in a small array.
        var top = new (ulong Score, int Index)[k];
        var filled = 0;
        for (var i = 0; i < hashes.Length; i++)
        {
            var index = matches.Indices[i];
            var score = Rendezvous.Mix(hashes[i] ^ salt);
            if (filled == k && score <= top[k - 1].Score)
            {
                continue;
            }

            var at = filled < k ? filled++ : k - 1;
            while (at > 0 && top[at - 1].Score < score)
            {
                top[at] = top[at - 1];
                at--;
            }

            top[at] = (score, index);
        }

        var result = new UpstreamProxy[k];
        for (var i = 0; i < k; i++)
        {
            result[i] = _records[top[i].Index];
        }

        return result;
    }

    /// <summary>Indices (ascending) of the records matching <paramref name="filter"/> that can carry TCP.</summary>
    internal MatchSet Matching(ProxyFilter filter, bool useCache = true)
    {
        if (useCache && _matches.TryGetValue(filter, out var cached))
        {
            return cached;
        }

        var bits = (ulong[])_tcp.Clone();
        var scratch = new ulong[_words];
        for (var f = 0; f < FieldCount; f++)
        {
            var wanted = filter.Constraint((ProxyField)f);
            if (wanted.Length == 0)
            {
                continue;
            }

            Array.Copy(_wildcards[f], scratch, _words);
            foreach (var value in wanted)
            {
                if (_postings[f].TryGetValue(value, out var posting))
                {
                    posting.OrInto(scratch);
                }
            }

            And(bits, scratch);
        }

        Flag(bits, _datacenter, filter.Datacenter);
        Flag(bits, _residential, filter.Residential);
        Flag(bits, _mobile, filter.Mobile);
        var count = 0;
        foreach (var word in bits)
        {
            count += BitOperations.PopCount(word);
        }

        var indices = new int[count];
        var hashes = new ulong[count];
        var at = 0;
        for (var w = 0; w < bits.Length; w++)
        {
            var word = bits[w];
            while (word != 0)
            {
                var index = (w * 64) + BitOperations.TrailingZeroCount(word);
                indices[at] = index;
                hashes[at++] = _idHashes[index];
                word &= word - 1;
            }
        }

        var result = new MatchSet(indices, hashes);
        if (!useCache)
        {
            return result;
        }

        if (Interlocked.Add(ref _cachedMatches, count) > MaxCachedMatches)
        {
            // Bounded: a flood of distinct filters costs recomputation, never memory.
            _matches.Clear();
            Interlocked.Exchange(ref _cachedMatches, count);
        }

        _matches[filter] = result;
        return result;
    }

    private static void Flag(ulong[] bits, ulong[] flag, bool? wanted)
    {
        if (wanted is true)
        {
            And(bits, flag);
        }
        else if (wanted is false)
        {
            for (var i = 0; i < bits.Length; i++)
            {
                bits[i] &= ~flag[i];
            }
        }
    }

    private static void And(ulong[] bits, ulong[] other)
    {
        for (var i = 0; i < bits.Length; i++)
        {
            bits[i] &= other[i];
        }
    }

    private static void Set(ulong[] bits, int index) => bits[index >> 6] |= 1UL << (index & 63);

    private static string ComputeVersion(UpstreamProxy[] records)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var line = new StringBuilder(256);
        var bytes = new byte[1024];
        foreach (var r in records)
        {
            line.Clear();
            foreach (var text in (ReadOnlySpan<string?>)[r.Id, r.Address.Endpoint.Host, r.Address.Scheme is { } s ? UpstreamAddress.ProtocolName(s) : "",
                r.Address.Credential?.User, r.Address.Credential?.Password, r.Pool, r.Continent, r.Country, r.State, r.City, r.Carrier, r.Asn])
            {
                line.Append(text).Append('\u001f');
            }

            line.Append(r.Address.Endpoint.Port).Append('\u001f')
                .Append(r.Tcp ? '1' : '0').Append(r.Udp ? '1' : '0').Append(r.Http ? '1' : '0').Append(r.Https ? '1' : '0')
                .Append(r.Socks5 ? '1' : '0').Append(r.Socks5h ? '1' : '0').Append(r.Datacenter ? '1' : '0').Append(r.Residential ? '1' : '0')
                .Append(r.Mobile ? '1' : '0');
            if (r.MaxConnections is not null || r.Rate is not null)
            {
                // Only records with limits hash them, so the versions of databases without any stay as they were.
                line.Append('\u001f').Append(r.MaxConnections).Append('\u001f').Append(r.Rate?.ToString());
            }

            line.Append('\n');
            var needed = Encoding.UTF8.GetMaxByteCount(line.Length);
            if (needed > bytes.Length)
            {
                bytes = new byte[needed];
            }

            var written = 0;
            foreach (var chunk in line.GetChunks())
            {
                written += Encoding.UTF8.GetBytes(chunk.Span, bytes.AsSpan(written));
            }

            hash.AppendData(bytes, 0, written);
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset())[..16];
    }

    /// <summary>A posting list: sorted indices when sparse, a bitset when dense (whichever is smaller).</summary>
    private readonly struct Posting
    {
        private readonly int[]? _indices;
        private readonly ulong[]? _bits;

        private Posting(int[]? indices, ulong[]? bits)
        {
            _indices = indices;
            _bits = bits;
        }

        public static Posting Create(List<int> indices, int words)
        {
            if (indices.Count * 32L < words * 64L)
            {
                return new Posting([.. indices], null);
            }

            var bits = new ulong[words];
            foreach (var i in indices)
            {
                Set(bits, i);
            }

            return new Posting(null, bits);
        }

        public void OrInto(ulong[] target)
        {
            if (_bits is not null)
            {
                for (var i = 0; i < target.Length; i++)
                {
                    target[i] |= _bits[i];
                }
            }
            else
            {
                foreach (var i in _indices!)
                {
                    Set(target, i);
                }
            }
        }
    }
}

/// <summary>
/// Hashes for rendezvous (HRW) selection, stable across processes and platforms (never
/// <see cref="string.GetHashCode()"/>, which is randomised per process): FNV-1a 64 over UTF-8, and
/// the SplitMix64 finaliser to mix a record's hash with the session's.
/// </summary>
internal static class Rendezvous
{
    public static ulong Hash(string text)
    {
        var hash = 14695981039346656037UL;
        Span<byte> buffer = stackalloc byte[256];
        var bytes = Encoding.UTF8.GetByteCount(text) <= buffer.Length ? buffer[..Encoding.UTF8.GetBytes(text, buffer)] : Encoding.UTF8.GetBytes(text);
        foreach (var b in bytes)
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }

        return Mix(hash);
    }

    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
        return z ^ (z >> 31);
    }
}

/// <summary>
/// A database that can be replaced as a whole (file reload): readers see the old or the new
/// snapshot, never a mix; each <see cref="Select"/> uses one snapshot throughout.
/// </summary>
public sealed class ReloadableProxyDatabase(IProxyDatabase initial) : IProxyDatabase
{
    private IProxyDatabase _current = initial;
    private long _selections;

    public IProxyDatabase Current => Volatile.Read(ref _current);

    /// <summary>Upstream selections routing made from this database since start (<c>pbm proxydb stats</c>).</summary>
    public long Selections => Interlocked.Read(ref _selections);

    /// <summary>Counts one selection made from <see cref="Current"/> by a caller that reads the snapshot itself (the router).</summary>
    public void CountSelection() => Interlocked.Increment(ref _selections);

    public string Version => Current.Version;

    public int Count => Current.Count;

    /// <summary>Atomically swaps in <paramref name="next"/>.</summary>
    public void Replace(IProxyDatabase next) => Volatile.Write(ref _current, next ?? throw new ArgumentNullException(nameof(next)));

    public IReadOnlyList<UpstreamProxy> Select(ProxyFilter filter, string? session, int maxCandidates) => Current.Select(filter, session, maxCandidates);

    public int CountMatches(ProxyFilter filter) => Current.CountMatches(filter);
}
