// benchmarks/AllocTicks: bytes allocated by type from the GC AllocationTick events of a dotnet-trace file
// (dotnet-trace collect --providers "Microsoft-Windows-DotNETRuntime:0x1:5"), divided by a request count.
//   dotnet run -c Release --project benchmarks/AllocTicks -- <file.nettrace> <requests>
using Microsoft.Diagnostics.Tracing;
using Microsoft.Diagnostics.Tracing.Parsers.Clr;
var bytes = new Dictionary<string, long>();
long total = 0;
using (var source = new EventPipeEventSource(args[0]))
{
    source.Clr.GCAllocationTick += (GCAllocationTickTraceData e) =>
    {
        var name = e.TypeName ?? "?";
        bytes[name] = bytes.GetValueOrDefault(name) + e.AllocationAmount64;
        total += e.AllocationAmount64;
    };
    source.Process();
}
var n = args.Length > 1 ? long.Parse(args[1]) : 1;
Console.WriteLine($"sampled total {total:N0} B; per request {total / n:N0}");
foreach (var (name, b) in bytes.OrderByDescending(p => p.Value).Take(45))
    Console.WriteLine($"{b * 100.0 / total,6:F1}% {b / n,6} B/req  {name}");
