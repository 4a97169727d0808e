using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Rama.Admin.Options;

namespace Rama.Admin.Hosting;

/// <summary>OTLP export of an executable's traces and metrics (OpenTelemetry.Extensions.Hosting with the OTLP exporter).</summary>
public static class TelemetryHostingExtensions
{
    /// <summary>
    /// With <see cref="TelemetryOptions.Otlp"/> set: an OpenTelemetry SDK in the host that exports the spans of
    /// <paramref name="activitySources"/> and the instruments of <paramref name="meters"/> to the collector, as
    /// <paramref name="serviceName"/>. Without it nothing is registered: no SDK, no listener on any source, no export.
    /// </summary>
    public static IServiceCollection AddRamaTelemetry(this IServiceCollection services, TelemetryOptions options, string serviceName,
        IReadOnlyCollection<string> activitySources, IReadOnlyCollection<string> meters)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrEmpty(serviceName);
        ArgumentNullException.ThrowIfNull(activitySources);
        ArgumentNullException.ThrowIfNull(meters);
        if (options.Otlp is null)
        {
            return services;
        }

        var protocol = options.Protocol == OtlpProtocol.Grpc ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;
        var version = typeof(TelemetryHostingExtensions).Assembly.GetName().Version?.ToString();
        var telemetry = services.AddOpenTelemetry().ConfigureResource(resource => resource.AddService(serviceName, serviceVersion: version));
        if (activitySources.Count > 0)
        {
            telemetry.WithTracing(tracing => tracing
                .AddSource([.. activitySources])
                .AddOtlpExporter(exporter =>
                {
                    exporter.Protocol = protocol;
                    exporter.Endpoint = options.EndpointFor("v1/traces");
                    exporter.BatchExportProcessorOptions.ScheduledDelayMilliseconds = (int)options.TraceExportDelay.TotalMilliseconds;
                }));
        }

        if (meters.Count > 0)
        {
            telemetry.WithMetrics(metrics => metrics
                .AddMeter([.. meters])
                .AddOtlpExporter((exporter, reader) =>
                {
                    exporter.Protocol = protocol;
                    exporter.Endpoint = options.EndpointFor("v1/metrics");
                    reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = (int)options.MetricExportInterval.TotalMilliseconds;
                }));
        }

        return services;
    }
}
