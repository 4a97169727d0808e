using System.Diagnostics.CodeAnalysis;
using System.Reflection;

namespace Rama.Actors.Actor;

/// <summary>
/// How to create an actor: its type, a factory, and optionally the strategy it uses to supervise
/// its own children. Immutable; a factory is called again on every restart, so it must return a
/// fresh instance each time.
/// </summary>
public sealed class Props
{
    private readonly Func<ActorBase> _factory;

    private Props(Type type, Func<ActorBase> factory, SupervisorStrategy? supervisorStrategy)
    {
        Type = type;
        _factory = factory;
        SupervisorStrategy = supervisorStrategy;
    }

    public Type Type { get; }

    /// <summary>The strategy the actor uses for its children; null means the actor's own (default: <see cref="SupervisorStrategy.DefaultStrategy"/>).</summary>
    public SupervisorStrategy? SupervisorStrategy { get; }

    /// <summary>An actor created with its parameterless constructor.</summary>
    public static Props Create<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] T>()
        where T : ActorBase =>
        new(typeof(T), static () => Activator.CreateInstance<T>(), null);

    /// <summary>An actor created with the public constructor matching <paramref name="args"/>.</summary>
    public static Props Create<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] T>(
        params object?[] args)
        where T : ActorBase => Create(typeof(T), args);

    /// <summary>An actor created by a factory (Akka's <c>Props.Create(() => new T(...))</c>).</summary>
    public static Props Create<T>(Func<T> factory)
        where T : ActorBase
    {
        ArgumentNullException.ThrowIfNull(factory);
        return new Props(typeof(T), factory, null);
    }

    public static Props Create(
        [DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] Type type,
        params object?[] args)
    {
        ArgumentNullException.ThrowIfNull(type);
        if (!typeof(ActorBase).IsAssignableFrom(type) || type.IsAbstract)
        {
            throw new ArgumentException($"{type} is not a concrete actor type.", nameof(type));
        }

        var arguments = args.ToArray();
        return new Props(type, () => (ActorBase)Activator.CreateInstance(type, arguments)!, null);
    }

    public Props WithSupervisorStrategy(SupervisorStrategy strategy)
    {
        ArgumentNullException.ThrowIfNull(strategy);
        return new Props(Type, _factory, strategy);
    }

    public override string ToString() => $"Props({Type.Name})";

    internal ActorBase NewActor() => _factory();

    /// <summary>Reflection wraps constructor exceptions; supervision wants the real one.</summary>
    internal static Exception Unwrap(Exception exception) =>
        exception is TargetInvocationException { InnerException: { } inner } ? inner : exception;
}
