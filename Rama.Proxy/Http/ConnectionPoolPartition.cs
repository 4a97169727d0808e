namespace Rama.Proxy.Http;

/// <summary>
/// Put in a request's extensions by a routing layer: pooled origin connections are kept and reused
/// per partition, so a request routed through one upstream never reuses a connection that goes
/// through another. Absent: one partition (direct connections).
/// </summary>
public sealed record ConnectionPoolPartition(string Name);
