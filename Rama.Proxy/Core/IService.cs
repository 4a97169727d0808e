namespace Rama.Proxy.Core;

/// <summary>
/// A service: one async method, one shared immutable instance serving many requests
/// ("services all the way down", after rama).
/// </summary>
public interface IService<in TRequest, TResponse>
{
    ValueTask<TResponse> ServeAsync(TRequest request, CancellationToken cancellationToken);
}

/// <summary>Wraps a service into another service with the same contract.</summary>
public interface ILayer<TRequest, TResponse>
{
    IService<TRequest, TResponse> Layer(IService<TRequest, TResponse> inner);
}

/// <summary>The empty result of a service that only has effects (a connection handler).</summary>
public readonly record struct Unit
{
    public static readonly Unit Value;
}

/// <summary>Composition helpers.</summary>
public static class Service
{
    /// <summary>A service from a delegate.</summary>
    public static IService<TRequest, TResponse> FromFunc<TRequest, TResponse>(
        Func<TRequest, CancellationToken, ValueTask<TResponse>> serve) => new FuncService<TRequest, TResponse>(serve);

    /// <summary>A layer from a delegate.</summary>
    public static ILayer<TRequest, TResponse> Layer<TRequest, TResponse>(
        Func<IService<TRequest, TResponse>, IService<TRequest, TResponse>> wrap) => new FuncLayer<TRequest, TResponse>(wrap);

    /// <summary>The identity layer: how an optional layer that is disabled is expressed.</summary>
    public static ILayer<TRequest, TResponse> Identity<TRequest, TResponse>() => IdentityLayer<TRequest, TResponse>.Instance;

    /// <summary>Applies layers outermost first: <c>Stack(svc, a, b)</c> is <c>a(b(svc))</c>.</summary>
    public static IService<TRequest, TResponse> Stack<TRequest, TResponse>(
        IService<TRequest, TResponse> service, params ILayer<TRequest, TResponse>[] layers)
    {
        ArgumentNullException.ThrowIfNull(service);
        ArgumentNullException.ThrowIfNull(layers);
        for (var i = layers.Length - 1; i >= 0; i--)
        {
            service = layers[i].Layer(service);
        }

        return service;
    }

    /// <summary>
    /// <paramref name="inner"/> plus a resource it owns (an origin pool, say): disposing the returned
    /// service disposes <paramref name="owned"/>. Layering a built stack keeps it disposable this way.
    /// </summary>
    public static IService<TRequest, TResponse> Owning<TRequest, TResponse>(IService<TRequest, TResponse> inner, IAsyncDisposable? owned) =>
        new OwningService<TRequest, TResponse>(inner, owned);

    private sealed class OwningService<TRequest, TResponse>(IService<TRequest, TResponse> inner, IAsyncDisposable? owned)
        : IService<TRequest, TResponse>, IAsyncDisposable
    {
        public ValueTask<TResponse> ServeAsync(TRequest request, CancellationToken cancellationToken) => inner.ServeAsync(request, cancellationToken);

        public ValueTask DisposeAsync() => owned?.DisposeAsync() ?? ValueTask.CompletedTask;
    }

    private sealed class FuncService<TRequest, TResponse>(Func<TRequest, CancellationToken, ValueTask<TResponse>> serve)
        : IService<TRequest, TResponse>
    {
        public ValueTask<TResponse> ServeAsync(TRequest request, CancellationToken cancellationToken) => serve(request, cancellationToken);
    }

    private sealed class FuncLayer<TRequest, TResponse>(Func<IService<TRequest, TResponse>, IService<TRequest, TResponse>> wrap)
        : ILayer<TRequest, TResponse>
    {
        public IService<TRequest, TResponse> Layer(IService<TRequest, TResponse> inner) => wrap(inner);
    }

    private sealed class IdentityLayer<TRequest, TResponse> : ILayer<TRequest, TResponse>
    {
        public static readonly IdentityLayer<TRequest, TResponse> Instance = new();

        public IService<TRequest, TResponse> Layer(IService<TRequest, TResponse> inner) => inner;
    }
}
