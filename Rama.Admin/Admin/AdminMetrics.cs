using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;

namespace Rama.Admin.Admin;

/// <summary>
/// The admin endpoint's <c>/metrics</c>: OpenTelemetry's MeterProvider (OpenTelemetry.Extensions.Hosting) collects the
/// meters <c>Rama.Proxy</c> and <c>Rama.Fleet</c>, and its Prometheus exporter (OpenTelemetry.Exporter.Prometheus.AspNetCore)
/// formats them. The exporter ships as ASP.NET Core middleware; the admin endpoint is not an ASP.NET Core server (it
/// shares its port with pbm), so the middleware runs in a pipeline of its own, built once, on a context per scrape.
/// </summary>
internal static class AdminMetrics
{
    /// <summary>The framework's meter (Rama.Proxy.Observability.ProxyMetrics; no reference from here: the lighthouse has no proxy code).</summary>
    public const string ProxyMeter = "Rama.Proxy";

    /// <summary>The actor system's and cluster's gauges (<see cref="FleetMetrics"/>, and Rama.Actors' sharding gauges).</summary>
    public const string FleetMeter = "Rama.Fleet";

    public const string Path = "/metrics";

    /// <summary>Registers the MeterProvider with both meters and the Prometheus exporter (another <c>WithMetrics</c>, e.g. OTLP, adds to the same provider).</summary>
    public static void Register(IServiceCollection services) =>
        services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddMeter(ProxyMeter, FleetMeter).AddPrometheusExporter());

    /// <summary>The scrape pipeline over <paramref name="services"/>' MeterProvider; null when the container has none.</summary>
    public static RequestDelegate? BuildScrape(IServiceProvider services)
    {
        if (services.GetService<MeterProvider>() is not { } provider)
        {
            return null;
        }

        var app = new ApplicationBuilder(services);
        app.UseOpenTelemetryPrometheusScrapingEndpoint(provider, predicate: null, path: Path, configureBranchedPipeline: null, optionsName: null);
        return app.Build();
    }
}
