using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using Rama.Actors.Actor;

namespace Rama.Actors.Hosting;

/// <summary>Actors registered by a key type (Akka.Hosting's ActorRegistry): resolve them anywhere in DI.</summary>
public interface IActorRegistry
{
    void Register<TKey>(IActorRef actor);

    bool TryGet<TKey>([NotNullWhen(true)] out IActorRef? actor);

    /// <summary>Completes when an actor is registered under <typeparamref name="TKey"/>.</summary>
    Task<IActorRef> GetAsync<TKey>(CancellationToken cancellationToken = default);
}

/// <summary>An actor that must exist; injected into services (Akka.Hosting's <c>IRequiredActor&lt;TKey&gt;</c>).</summary>
public interface IRequiredActor<TKey>
{
    /// <summary>The actor; throws when the actor system has not started it yet.</summary>
    IActorRef ActorRef { get; }

    Task<IActorRef> GetAsync(CancellationToken cancellationToken = default);
}

internal sealed class ActorRegistry : IActorRegistry
{
    private readonly ConcurrentDictionary<Type, TaskCompletionSource<IActorRef>> _actors = new();

    private TaskCompletionSource<IActorRef> Slot(Type key) =>
        _actors.GetOrAdd(key, _ => new TaskCompletionSource<IActorRef>(TaskCreationOptions.RunContinuationsAsynchronously));

    public void Register<TKey>(IActorRef actor)
    {
        if (!Slot(typeof(TKey)).TrySetResult(actor))
        {
            throw new InvalidOperationException($"an actor is already registered for {typeof(TKey).Name}");
        }
    }

    public bool TryGet<TKey>([NotNullWhen(true)] out IActorRef? actor)
    {
        var slot = Slot(typeof(TKey)).Task;
        actor = slot.IsCompletedSuccessfully ? slot.Result : null;
        return actor is not null;
    }

    public Task<IActorRef> GetAsync<TKey>(CancellationToken cancellationToken = default) =>
        Slot(typeof(TKey)).Task.WaitAsync(cancellationToken);
}

internal sealed class RequiredActor<TKey>(IActorRegistry registry) : IRequiredActor<TKey>
{
    public IActorRef ActorRef => registry.TryGet<TKey>(out var actor)
        ? actor
        : throw new InvalidOperationException($"no actor registered for {typeof(TKey).Name} yet (the actor system starts with the host)");

    public Task<IActorRef> GetAsync(CancellationToken cancellationToken = default) => registry.GetAsync<TKey>(cancellationToken);
}
