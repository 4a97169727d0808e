namespace Rama.Actors.Actor;

/// <summary>
/// An actor whose behavior is a list of typed handlers, declared in the constructor (or inside
/// <see cref="Become(Action)"/>); the first handler whose type and predicate match handles a message.
/// </summary>
public abstract class ReceiveActor : ActorBase
{
    private readonly MessageHandlers _initial = new();
    private MessageHandlers? _building;

    protected ReceiveActor()
    {
        _building = _initial;
    }

    protected sealed override bool Receive(object message) => _initial.TryHandle(message);

    protected void Receive<T>(Action<T> handler, Predicate<T>? shouldHandle = null) =>
        Add(shouldHandle, message => handler(message));

    protected void Receive<T>(Predicate<T> shouldHandle, Action<T> handler) => Receive(handler, shouldHandle);

    /// <summary>
    /// An async handler: the actor processes no other message until the task completes; after
    /// awaits the code runs on the actor again (Self and Sender stay valid).
    /// </summary>
    protected void ReceiveAsync<T>(Func<T, Task> handler, Predicate<T>? shouldHandle = null) =>
        Add(shouldHandle, message => RunTask(() => handler(message)));

    protected void ReceiveAsync<T>(Predicate<T> shouldHandle, Func<T, Task> handler) => ReceiveAsync(handler, shouldHandle);

    protected void ReceiveAny(Action<object> handler) => Receive(handler);

    protected void ReceiveAnyAsync(Func<object, Task> handler) => ReceiveAsync(handler);

    /// <summary>Replaces the behavior with the handlers that <paramref name="configure"/> declares.</summary>
    protected void Become(Action configure) => Become(Build(configure).TryHandle);

    /// <summary>Pushes the handlers that <paramref name="configure"/> declares; <see cref="ActorBase.UnbecomeStacked"/> pops them.</summary>
    protected void BecomeStacked(Action configure) => BecomeStacked(Build(configure).TryHandle);

    internal override void AfterConstruction() => _building = null;

    private MessageHandlers Build(Action configure)
    {
        var previous = _building;
        var handlers = new MessageHandlers();
        _building = handlers;
        try
        {
            configure();
        }
        finally
        {
            _building = previous;
        }

        return handlers;
    }

    private void Add<T>(Predicate<T>? shouldHandle, Action<T> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        var target = _building
            ?? throw new InvalidOperationException("Receive can only be called in the constructor or inside Become.");
        target.Add(typeof(T), shouldHandle is null ? null : message => shouldHandle((T)message), message => handler((T)message));
    }

    private sealed class MessageHandlers
    {
        private readonly List<(Type Type, Func<object, bool>? Predicate, Action<object> Handler)> _handlers = [];

        public void Add(Type type, Func<object, bool>? predicate, Action<object> handler) => _handlers.Add((type, predicate, handler));

        public bool TryHandle(object message)
        {
            foreach (var (type, predicate, handler) in _handlers)
            {
                if (type.IsInstanceOfType(message) && (predicate is null || predicate(message)))
                {
                    handler(message);
                    return true;
                }
            }

            return false;
        }
    }
}
