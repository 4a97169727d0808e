using System.Globalization;
using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using Rama.Proxy.Upstream;

namespace Rama.Benchmarks.Upstream;

/// <summary>
/// Upstream selection over a proxy database of 100,000 records (seeded, provider-like attributes:
/// 40 countries with a skewed spread, 20 pools, 400 cities, 1,000 ASNs, mixed flags).
/// </summary>
[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 10)]
public class SelectionBenchmarks
{
    private ProxyDatabaseSnapshot _db = null!;
    private string _csv = "";
    private ProxyFilter _broad = null!;
    private ProxyFilter _narrow = null!;
    private ProxyFilter _combined = null!;
    private int _session;

    [Params(100_000)]
    public int Records { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _csv = Generate(Records, seed: 7);
        _db = (ProxyDatabaseSnapshot)ProxyDatabase.Parse(_csv);
        _broad = ProxyUsername.Parse("u-country-us").Filter;                      // ~25% of records
        _narrow = ProxyUsername.Parse("u-city-c17").Filter;                        // ~0.25%
        _combined = ProxyUsername.Parse("u-country-us-country-de-residential-!mobile-pool-p3-pool-p4").Filter;
    }

    internal static string Generate(int count, int seed)
    {
        var random = new Random(seed);
        var text = new StringBuilder(count * 80);
        for (var i = 0; i < count; i++)
        {
            // Skewed: country 0 (us) gets a quarter of the records.
            var country = random.Next(4) == 0 ? "us" : "c" + random.Next(1, 40).ToString(CultureInfo.InvariantCulture);
            bool dc = random.Next(3) == 0, res = random.Next(2) == 0, mob = random.Next(4) == 0;
            if (!(dc || res || mob))
            {
                res = true;
            }

            text.Append(CultureInfo.InvariantCulture, $"p{i},1,0,1,0,1,1,{B(dc)},{B(res)},{B(mob)},10.{i >> 16}.{(i >> 8) & 255}.{i & 255}:8080,p{random.Next(20)},");
            text.Append(CultureInfo.InvariantCulture, $"na,{(i == 0 ? "us" : country)},,c{random.Next(400)},carrier{random.Next(10)},{random.Next(1000)}\n");
        }

        return text.ToString();

        static string B(bool b) => b ? "1" : "0";
    }

    private string NextSession() => "session-" + (++_session).ToString(CultureInfo.InvariantCulture);

    [Benchmark(Description = "sticky session, broad filter (~25k matches), 1 candidate")]
    public UpstreamProxy StickyBroad() => _db.Select(_broad, NextSession(), 1)[0];

    [Benchmark(Description = "sticky session, broad filter, 3 candidates (fail-over list)")]
    public UpstreamProxy StickyBroadThree() => _db.Select(_broad, NextSession(), 3)[0];

    [Benchmark(Description = "sticky session, narrow filter (~250 matches)")]
    public UpstreamProxy StickyNarrow() => _db.Select(_narrow, NextSession(), 1)[0];

    [Benchmark(Description = "random, broad filter")]
    public UpstreamProxy RandomBroad() => _db.Select(_broad, null, 1)[0];

    [Benchmark(Description = "sticky session, no filter (all 100k)")]
    public UpstreamProxy StickyAll() => _db.Select(ProxyFilter.Empty, NextSession(), 1)[0];

    [Benchmark(Description = "index evaluation, uncached, 3 fields + 2 flags")]
    public int IndexUncached() => _db.Matching(_combined, useCache: false).Indices.Length;

    [Benchmark(Description = "load + index 100k CSV rows")]
    public int Load() => ProxyDatabase.Parse(_csv).Count;
}

public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
