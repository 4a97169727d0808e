using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Rama.IntegrationTests;

/// <summary>A real HTTP/1.1 origin (Kestrel) on 127.0.0.1:0 with the endpoints the proxy tests need.</summary>
internal sealed class KestrelOrigin : IAsyncDisposable
{
    private readonly WebApplication _app;

    private KestrelOrigin(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    public string Url(string path) => $"http://127.0.0.1:{Port}{path}";

    /// <summary>Request heads seen, as "METHOD path | header names in order | conn=connection id".</summary>
    public ConcurrentQueue<string> Seen { get; } = new();

    /// <summary>Distinct client connections the origin accepted.</summary>
    public ConcurrentDictionary<string, int> Connections { get; } = new();

    /// <summary>Completed by a test to let /hold requests answer.</summary>
    public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TaskCompletionSource HoldReached { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public static async Task<KestrelOrigin> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = null;
            k.Listen(System.Net.IPAddress.Loopback, 0);
        });
        var app = builder.Build();
        KestrelOrigin? self = null;
        app.Use(async (ctx, next) =>
        {
            self!.Seen.Enqueue($"{ctx.Request.Method} {ctx.Request.Path}{ctx.Request.QueryString} | {string.Join(",", ctx.Request.Headers.Keys)} | conn={ctx.Connection.Id}");
            self.Connections.AddOrUpdate(ctx.Connection.Id, 1, (_, n) => n + 1);
            await next(ctx);
        });
        app.MapMethods("/hello", ["GET", "HEAD"], () => Results.Text("hello from origin"));
        app.MapMethods("/echo-headers", ["GET"], (HttpContext ctx) => Results.Text(string.Join("\n", ctx.Request.Headers.Select(h => $"{h.Key}: {h.Value}"))));
        app.MapPost("/upload", async (HttpContext ctx) =>
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[64 * 1024];
            long total = 0;
            int n;
            while ((n = await ctx.Request.Body.ReadAsync(buffer)) > 0)
            {
                sha.AppendData(buffer, 0, n);
                total += n;
            }

            return Results.Text($"{total} {Convert.ToHexStringLower(sha.GetHashAndReset())}");
        });
        app.MapGet("/chunked", async (HttpContext ctx) =>
        {
            // No Content-Length: Kestrel sends Transfer-Encoding: chunked.
            for (var i = 0; i < 5; i++)
            {
                await ctx.Response.WriteAsync($"chunk{i};");
                await ctx.Response.Body.FlushAsync();
            }
        });
        app.MapGet("/bytes/{count:long}", async (HttpContext ctx, long count) =>
        {
            ctx.Response.ContentLength = count;
            var block = new byte[64 * 1024];
            Random.Shared.NextBytes(block);
            var left = count;
            while (left > 0)
            {
                var n = (int)Math.Min(left, block.Length);
                await ctx.Response.Body.WriteAsync(block.AsMemory(0, n));
                left -= n;
            }
        });
        app.MapGet("/hold", async (HttpContext ctx) =>
        {
            self!.HoldReached.TrySetResult();
            await self.Release.Task.WaitAsync(TimeSpan.FromSeconds(30));
            return Results.Text("held response");
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        self = new KestrelOrigin(app, new Uri(address).Port);
        return self;
    }

    public async ValueTask DisposeAsync()
    {
        Release.TrySetResult();
        await _app.StopAsync(TimeSpan.FromSeconds(5).ToCancellationToken());
        await _app.DisposeAsync();
    }
}

internal static class TimeSpanExtensions
{
    public static CancellationToken ToCancellationToken(this TimeSpan span) => new CancellationTokenSource(span).Token;
}

internal static class Formats
{
    public static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);
}
