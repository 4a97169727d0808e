using System.Diagnostics.CodeAnalysis;

namespace Rama.Admin.Options;

/// <summary>The OTLP protocol of <see cref="TelemetryOptions.Otlp"/>.</summary>
public enum OtlpProtocol
{
    /// <summary>OTLP/HTTP with protobuf bodies (a collector's port 4318): <c>/v1/traces</c> and <c>/v1/metrics</c> under the endpoint.</summary>
    Http,

    /// <summary>OTLP/gRPC (a collector's port 4317): the endpoint as given.</summary>
    Grpc,
}

/// <summary>
/// Telemetry export (section <c>Rama:Telemetry</c>): traces and metrics sent by OTLP to a collector. Without
/// <see cref="Otlp"/> nothing is exported and no OpenTelemetry SDK is attached.
/// </summary>
public sealed record TelemetryOptions
{
    /// <summary>The collector's OTLP endpoint (<c>--otlp</c>, <c>Rama:Telemetry:Otlp</c>); null: no export.</summary>
    public Uri? Otlp { get; init; }

    /// <summary><c>--otlp-protocol</c>: http (default, OTLP/HTTP protobuf) or grpc.</summary>
    public OtlpProtocol Protocol { get; init; } = OtlpProtocol.Http;

    /// <summary>The longest a finished span waits before its batch is sent (default 5 s: OpenTelemetry's <c>OTEL_BSP_SCHEDULE_DELAY</c>).</summary>
    public TimeSpan TraceExportDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How often metrics are sent (default 60 s: OpenTelemetry's <c>OTEL_METRIC_EXPORT_INTERVAL</c>).</summary>
    public TimeSpan MetricExportInterval { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The endpoint a signal goes to: for OTLP/HTTP the endpoint's base with <paramref name="signalPath"/> (<c>v1/traces</c>) appended, as the OTLP specification does with <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>; for gRPC the endpoint itself.</summary>
    public Uri EndpointFor(string signalPath)
    {
        ArgumentNullException.ThrowIfNull(Otlp);
        return Protocol == OtlpProtocol.Grpc ? Otlp : new Uri(Otlp.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/" + signalPath);
    }

    public static RamaOption OtlpOption { get; } = new()
    {
        Key = "Rama:Telemetry:Otlp", Name = "--otlp", Value = OtlpEndpointValue.Instance,
        Description = "Export traces and metrics by OTLP to this collector endpoint (http://host:4318 for OTLP/HTTP, http://host:4317 with --otlp-protocol grpc); default none",
    };

    public static RamaOption OtlpProtocolOption { get; } = new()
    {
        Key = "Rama:Telemetry:OtlpProtocol", Name = "--otlp-protocol", Value = OptionValue.Choice(["http", "grpc"]), Default = "http",
        Description = "OTLP protocol of --otlp: http (protobuf over HTTP, default) or grpc",
    };

    public static RamaOption TraceExportDelayOption { get; } = new()
    {
        Key = "Rama:Telemetry:TraceExportDelay", Value = OptionValue.Duration(TimeSpan.FromMilliseconds(10), TimeSpan.FromHours(1)), Default = "00:00:05",
        Description = "Longest wait of a finished span before its batch is exported (default 5 s)",
    };

    public static RamaOption MetricExportIntervalOption { get; } = new()
    {
        Key = "Rama:Telemetry:MetricExportInterval", Value = OptionValue.Duration(TimeSpan.FromMilliseconds(10), TimeSpan.FromHours(1)), Default = "00:01:00",
        Description = "Interval of the OTLP metrics export (default 60 s)",
    };

    /// <summary>The telemetry options, for an executable's declared options.</summary>
    [SuppressMessage("Design", "CA1002", Justification = "A read-only list.")]
    public static IReadOnlyList<RamaOption> Declarations { get; } = [OtlpOption, OtlpProtocolOption, TraceExportDelayOption, MetricExportIntervalOption];

    /// <summary>Reads and validates the options; problems go to <paramref name="reader"/>.</summary>
    public static TelemetryOptions Read(OptionsReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var endpoint = reader.Text(OtlpOption);
        return new TelemetryOptions
        {
            Otlp = endpoint is null ? null : new Uri(endpoint),
            Protocol = reader.Text(OtlpProtocolOption) == "grpc" ? OtlpProtocol.Grpc : OtlpProtocol.Http,
            TraceExportDelay = reader.Duration(TraceExportDelayOption, TimeSpan.FromSeconds(5)),
            MetricExportInterval = reader.Duration(MetricExportIntervalOption, TimeSpan.FromSeconds(60)),
        };
    }

    /// <summary>An absolute http:// or https:// URL with a host.</summary>
    private sealed class OtlpEndpointValue : OptionValue
    {
        public static readonly OtlpEndpointValue Instance = new();

        public override string Allowed => "is an http:// or https:// URL (http://127.0.0.1:4318)";

        public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
        {
            value = Uri.TryCreate(text.Trim(), UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.Host.Length > 0
                && string.IsNullOrEmpty(uri.Query) && string.IsNullOrEmpty(uri.Fragment) && string.IsNullOrEmpty(uri.UserInfo)
                ? uri.ToString()
                : null;
            return value is not null;
        }
    }
}
