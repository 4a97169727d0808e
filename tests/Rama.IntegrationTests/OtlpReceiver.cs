using System.Collections.Concurrent;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Rama.IntegrationTests;

/// <summary>One span as an OTLP collector received it (opentelemetry-proto trace/v1/trace.proto).</summary>
internal sealed record OtlpSpan(string TraceId, string SpanId, string ParentSpanId, string TraceState, string Name, int Kind,
    IReadOnlyDictionary<string, object> Attributes, string Scope, IReadOnlyDictionary<string, object> Resource)
{
    /// <summary>opentelemetry-proto Span.SpanKind: SPAN_KIND_SERVER.</summary>
    public const int Server = 2;

    public object? this[string key] => Attributes.TryGetValue(key, out var value) ? value : null;
}

/// <summary>
/// One data point of a metric as an OTLP collector received it (opentelemetry-proto metrics/v1/metrics.proto): a Sum's or a
/// Gauge's value (as_int or as_double), or a Histogram's count and sum.
/// </summary>
internal sealed record OtlpPoint(string Scope, string Metric, string Type, IReadOnlyDictionary<string, object> Attributes, double Value, double Sum)
{
    public object? this[string key] => Attributes.TryGetValue(key, out var value) ? value : null;
}

/// <summary>
/// A local OTLP/HTTP receiver (a collector's port 4318, protobuf bodies) on 127.0.0.1:0, on Kestrel: <c>POST /v1/traces</c>
/// decodes each ExportTraceServiceRequest into <see cref="Spans"/>; <c>POST /v1/metrics</c> each ExportMetricsServiceRequest
/// into <see cref="Points"/> (in the order received: with cumulative temporality, the exporter's default, the last point of a
/// series is its total). The protobuf messages are decoded here from the wire format (the few fields the tests need,
/// unknown ones skipped), so that what is checked is the bytes the OTLP exporter sent.
/// </summary>
internal sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;

    private OtlpReceiver(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    /// <summary>The endpoint to give <c>--otlp</c> (the exporter appends <c>/v1/traces</c>).</summary>
    public string Endpoint => $"http://127.0.0.1:{Port}";

    public ConcurrentQueue<OtlpSpan> Spans { get; } = new();

    public ConcurrentQueue<OtlpPoint> Points { get; } = new();

    /// <summary>The latest value received of <paramref name="metric"/> of meter <paramref name="scope"/> whose attributes include <paramref name="attributes"/>; null before any.</summary>
    public OtlpPoint? Latest(string scope, string metric, params (string Key, object Value)[] attributes) =>
        Points.LastOrDefault(p => p.Scope == scope && p.Metric == metric && attributes.All(a => Equals(p[a.Key], a.Value)));

    /// <summary>Requests the receiver could not decode (a test fails on any).</summary>
    public ConcurrentQueue<string> Errors { get; } = new();

    public static async Task<OtlpReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0));
        var app = builder.Build();
        OtlpReceiver? self = null;
        app.MapPost("/v1/traces", async (HttpContext ctx) => await self!.ReceiveAsync(ctx, self.DecodeTraces));
        app.MapPost("/v1/metrics", async (HttpContext ctx) => await self!.ReceiveAsync(ctx, self.DecodeMetrics));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        self = new OtlpReceiver(app, new Uri(address).Port);
        return self;
    }

    private async Task<IResult> ReceiveAsync(HttpContext ctx, Action<byte[]> decode)
    {
        if (ctx.Request.ContentType != "application/x-protobuf")
        {
            Errors.Enqueue("content type " + ctx.Request.ContentType);
            return Results.StatusCode(415);
        }

        using var body = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(body);
        try
        {
            decode(body.ToArray());
        }
        catch (FormatException ex)
        {
            Errors.Enqueue(ex.Message);
            return Results.BadRequest();
        }

        // An empty Export*ServiceResponse: full success (OTLP/HTTP §Full Success).
        return Results.Bytes([], "application/x-protobuf");
    }

    // ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
    // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }  Resource { repeated KeyValue attributes = 1; }
    // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }  InstrumentationScope { string name = 1; }
    private void DecodeTraces(byte[] request)
    {
        foreach (var (field, resourceSpans) in Fields(request))
        {
            if (field != 1)
            {
                continue;
            }

            var resource = new Dictionary<string, object>();
            var scopes = new List<byte[]>();
            foreach (var (f, value) in Fields(resourceSpans))
            {
                if (f == 1)
                {
                    foreach (var (rf, kv) in Fields(value))
                    {
                        if (rf == 1)
                        {
                            AddKeyValue(resource, kv);
                        }
                    }
                }
                else if (f == 2)
                {
                    scopes.Add(value);
                }
            }

            foreach (var scopeSpans in scopes)
            {
                var scope = "";
                var spans = new List<byte[]>();
                foreach (var (f, value) in Fields(scopeSpans))
                {
                    if (f == 1)
                    {
                        scope = Fields(value).Where(x => x.Field == 1).Select(x => Encoding.UTF8.GetString(x.Value)).FirstOrDefault() ?? "";
                    }
                    else if (f == 2)
                    {
                        spans.Add(value);
                    }
                }

                foreach (var span in spans)
                {
                    Spans.Enqueue(DecodeSpan(span, scope, resource));
                }
            }
        }
    }

    // Span { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4; string name = 5;
    //        SpanKind kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8; repeated KeyValue attributes = 9; ... }
    private static OtlpSpan DecodeSpan(byte[] span, string scope, Dictionary<string, object> resource)
    {
        string traceId = "", spanId = "", parent = "", state = "", name = "";
        var kind = 0;
        var attributes = new Dictionary<string, object>();
        var reader = new ProtoReader(span);
        while (reader.Next(out var field, out var wireType))
        {
            switch (field, wireType)
            {
                case (1, 2): traceId = Convert.ToHexStringLower(reader.Bytes()); break;
                case (2, 2): spanId = Convert.ToHexStringLower(reader.Bytes()); break;
                case (3, 2): state = Encoding.UTF8.GetString(reader.Bytes()); break;
                case (4, 2): parent = Convert.ToHexStringLower(reader.Bytes()); break;
                case (5, 2): name = Encoding.UTF8.GetString(reader.Bytes()); break;
                case (6, 0): kind = (int)reader.Varint(); break;
                case (9, 2): AddKeyValue(attributes, reader.Bytes()); break;
                default: reader.Skip(wireType); break;
            }
        }

        return new OtlpSpan(traceId, spanId, parent, state, name, kind, attributes, scope, resource);
    }

    // ExportMetricsServiceRequest { repeated ResourceMetrics resource_metrics = 1; } ResourceMetrics { ...; repeated ScopeMetrics scope_metrics = 2; }
    // ScopeMetrics { InstrumentationScope scope = 1; repeated Metric metrics = 2; }
    // Metric { string name = 1; ...; oneof data { Gauge gauge = 5; Sum sum = 7; Histogram histogram = 9; ... } }
    // Gauge, Sum, Histogram { repeated <data point> data_points = 1; ... }
    private void DecodeMetrics(byte[] request)
    {
        foreach (var (_, resourceMetrics) in Fields(request).Where(x => x.Field == 1))
        {
            foreach (var (_, scopeMetrics) in Fields(resourceMetrics).Where(x => x.Field == 2))
            {
                var scope = Fields(scopeMetrics).Where(x => x.Field == 1)
                    .SelectMany(x => Fields(x.Value)).Where(x => x.Field == 1).Select(x => Encoding.UTF8.GetString(x.Value)).FirstOrDefault() ?? "";
                foreach (var (_, metric) in Fields(scopeMetrics).Where(x => x.Field == 2))
                {
                    var fields = Fields(metric);
                    var name = fields.Where(x => x.Field == 1).Select(x => Encoding.UTF8.GetString(x.Value)).FirstOrDefault() ?? "";
                    foreach (var (field, data) in fields)
                    {
                        var type = field switch { 5 => "gauge", 7 => "sum", 9 => "histogram", _ => null };
                        if (type is null)
                        {
                            continue; // exponential histograms and summaries: not used by Rama
                        }

                        foreach (var (_, point) in Fields(data).Where(x => x.Field == 1))
                        {
                            Points.Enqueue(type == "histogram" ? DecodeHistogramPoint(scope, name, point) : DecodeNumberPoint(scope, name, type, point));
                        }
                    }
                }
            }
        }
    }

    // NumberDataPoint { fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3; double as_double = 4; repeated Exemplar exemplars = 5;
    //                   sfixed64 as_int = 6; repeated KeyValue attributes = 7; uint32 flags = 8; }
    private static OtlpPoint DecodeNumberPoint(string scope, string metric, string type, byte[] point)
    {
        var attributes = new Dictionary<string, object>();
        double value = double.NaN;
        var reader = new ProtoReader(point);
        while (reader.Next(out var field, out var wireType))
        {
            switch (field, wireType)
            {
                case (4, 1): value = BitConverter.Int64BitsToDouble((long)reader.Fixed64()); break;
                case (6, 1): value = (long)reader.Fixed64(); break;
                case (7, 2): AddKeyValue(attributes, reader.Bytes()); break;
                default: reader.Skip(wireType); break;
            }
        }

        return new OtlpPoint(scope, metric, type, attributes, value, value);
    }

    // HistogramDataPoint { fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3; fixed64 count = 4; double sum = 5;
    //                      repeated fixed64 bucket_counts = 6; repeated double explicit_bounds = 7; ...; repeated KeyValue attributes = 9; ... }
    private static OtlpPoint DecodeHistogramPoint(string scope, string metric, byte[] point)
    {
        var attributes = new Dictionary<string, object>();
        double count = double.NaN, sum = double.NaN;
        var reader = new ProtoReader(point);
        while (reader.Next(out var field, out var wireType))
        {
            switch (field, wireType)
            {
                case (4, 1): count = reader.Fixed64(); break;
                case (5, 1): sum = BitConverter.Int64BitsToDouble((long)reader.Fixed64()); break;
                case (9, 2): AddKeyValue(attributes, reader.Bytes()); break;
                default: reader.Skip(wireType); break;
            }
        }

        return new OtlpPoint(scope, metric, "histogram", attributes, count, sum);
    }

    // KeyValue { string key = 1; AnyValue value = 2; }
    // AnyValue { oneof { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; ... } }
    private static void AddKeyValue(Dictionary<string, object> into, byte[] keyValue)
    {
        string? key = null;
        object? value = null;
        foreach (var (field, bytes) in Fields(keyValue))
        {
            if (field == 1)
            {
                key = Encoding.UTF8.GetString(bytes);
            }
            else if (field == 2)
            {
                var reader = new ProtoReader(bytes);
                while (reader.Next(out var f, out var wireType))
                {
                    value = (f, wireType) switch
                    {
                        (1, 2) => Encoding.UTF8.GetString(reader.Bytes()),
                        (2, 0) => reader.Varint() != 0,
                        (3, 0) => (long)reader.Varint(),
                        (4, 1) => BitConverter.Int64BitsToDouble((long)reader.Fixed64()),
                        _ => SkipAndKeep(reader, wireType, value),
                    };
                }
            }
        }

        if (key is not null && value is not null)
        {
            into[key] = value;
        }
    }

    private static object? SkipAndKeep(ProtoReader reader, int wireType, object? value)
    {
        reader.Skip(wireType);
        return value;
    }

    /// <summary>The length-delimited fields of a message (others skipped).</summary>
    private static List<(int Field, byte[] Value)> Fields(byte[] message)
    {
        var fields = new List<(int, byte[])>();
        var reader = new ProtoReader(message);
        while (reader.Next(out var field, out var wireType))
        {
            if (wireType == 2)
            {
                fields.Add((field, reader.Bytes()));
            }
            else
            {
                reader.Skip(wireType);
            }
        }

        return fields;
    }

    /// <summary>The protobuf wire format (protobuf.dev/programming-guides/encoding): varints, fixed 32/64, length-delimited.</summary>
    private sealed class ProtoReader(byte[] data)
    {
        private int _at;

        public bool Next(out int field, out int wireType)
        {
            field = wireType = 0;
            if (_at >= data.Length)
            {
                return false;
            }

            var tag = Varint();
            field = (int)(tag >> 3);
            wireType = (int)(tag & 7);
            return field > 0 ? true : throw new FormatException("field number 0");
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (_at >= data.Length)
                {
                    throw new FormatException("truncated varint");
                }

                var b = data[_at++];
                value |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }

            throw new FormatException("varint too long");
        }

        public ulong Fixed64()
        {
            Need(8);
            var value = BitConverter.ToUInt64(data, _at);
            _at += 8;
            return value;
        }

        public byte[] Bytes()
        {
            var length = (int)Varint();
            Need(length);
            var value = data.AsSpan(_at, length).ToArray();
            _at += length;
            return value;
        }

        public void Skip(int wireType)
        {
            switch (wireType)
            {
                case 0: Varint(); break;
                case 1: Need(8); _at += 8; break;
                case 2: Bytes(); break;
                case 5: Need(4); _at += 4; break;
                default: throw new FormatException($"wire type {wireType}");
            }
        }

        private void Need(int count)
        {
            if (count < 0 || _at + count > data.Length)
            {
                throw new FormatException("truncated field");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
