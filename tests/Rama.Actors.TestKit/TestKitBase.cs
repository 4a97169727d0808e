using System.Diagnostics;
using Rama.Actors.Actor;
using Xunit;

namespace Rama.Actors.TestKit;

/// <summary>
/// Expectations on the messages a test actor receives (Akka.TestKit's vocabulary). Shared by
/// <see cref="TestKit"/> (its <see cref="TestActor"/>) and every <see cref="TestProbe"/>.
/// Timeouts default to <see cref="DefaultTimeout"/> (3 s) and are cut to what is left of an
/// enclosing <see cref="Within(TimeSpan, Action)"/>.
/// </summary>
public abstract class TestKitBase
{
    private readonly MessageQueue _queue;
    private readonly TimingState _timing;

    private protected TestKitBase(ActorSystem system, TimingState timing, string namePrefix)
    {
        Sys = system;
        _timing = timing;
        _queue = new MessageQueue();
        TestActor = ((ActorSystemImpl)system).SystemActorOf(
            Props.Create(() => new TestActor(_queue)),
            $"{namePrefix}{Interlocked.Increment(ref timing.ActorCounter)}");
    }

    /// <summary>Akka.TestKit's <c>single-expect-default</c>: 3 s.</summary>
    public static TimeSpan DefaultTimeout { get; } = TimeSpan.FromSeconds(3);

    public ActorSystem Sys { get; }

    /// <summary>The actor whose messages the expectations look at; use it as sender to get replies here.</summary>
    public IActorRef TestActor { get; }

    /// <summary>The sender of the last message received.</summary>
    public IActorRef LastSender { get; private set; } = ActorRefs.Nobody;

    /// <summary>The last message received.</summary>
    public object? LastMessage { get; private set; }

    /// <summary>The time left in the enclosing <see cref="Within(TimeSpan, Action)"/>, else <see cref="DefaultTimeout"/>.</summary>
    public TimeSpan RemainingOrDefault => RemainingOr(DefaultTimeout);

    public TestProbe CreateTestProbe(string? name = null) => new(Sys, _timing, name);

    public IActorRef ActorOf(Props props, string? name = null) => Sys.ActorOf(props, name);

    /// <summary>
    /// Makes the test actor watch <paramref name="actor"/> and returns once the watch is registered,
    /// so a stop requested afterwards is seen; use <see cref="ExpectTerminated"/> to see it stop.
    /// </summary>
    public IActorRef Watch(IActorRef actor)
    {
        using var done = new ManualResetEventSlim();
        TestActor.Tell(new TestActor.WatchRequest(actor, done), ActorRefs.Nobody);
        AwaitRegistration(done, "Watch");
        return actor;
    }

    /// <summary>Stops watching; returns once the test actor has unwatched.</summary>
    public IActorRef Unwatch(IActorRef actor)
    {
        using var done = new ManualResetEventSlim();
        TestActor.Tell(new TestActor.UnwatchRequest(actor, done), ActorRefs.Nobody);
        AwaitRegistration(done, "Unwatch");
        return actor;
    }

    /// <summary>Sends a message with the test actor as sender.</summary>
    public void Send(IActorRef actor, object message) => actor.Tell(message, TestActor);

    /// <summary>Answers the sender of the last message received.</summary>
    public void Reply(object message) => LastSender.Tell(message, TestActor);

    /// <summary>Forwards the last message received, keeping its sender.</summary>
    public void Forward(IActorRef actor) =>
        actor.Tell(LastMessage ?? throw new InvalidOperationException("No message received yet."), LastSender);

    public ReceivedMessage? ReceiveOne(TimeSpan? timeout = null) => Record(_queue.Take(RemainingOr(timeout)));

    public async Task<ReceivedMessage?> ReceiveOneAsync(TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Record(await _queue.TakeAsync(RemainingOr(timeout), cancellationToken).ConfigureAwait(false));

    public T ExpectMsg<T>(TimeSpan? timeout = null) => Check<T>(ReceiveOne(timeout), timeout, null);

    public T ExpectMsg<T>(Predicate<T> predicate, TimeSpan? timeout = null) => Check(ReceiveOne(timeout), timeout, predicate);

    /// <summary>Expects a message equal to <paramref name="expected"/>.</summary>
    public T ExpectMsg<T>(T expected, TimeSpan? timeout = null)
        where T : notnull => Check<T>(ReceiveOne(timeout), timeout, m => Equals(m, expected), $"equal to {expected}");

    public async Task<T> ExpectMsgAsync<T>(TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Check<T>(await ReceiveOneAsync(timeout, cancellationToken).ConfigureAwait(false), timeout, null);

    public async Task<T> ExpectMsgAsync<T>(Predicate<T> predicate, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Check(await ReceiveOneAsync(timeout, cancellationToken).ConfigureAwait(false), timeout, predicate);

    public async Task<T> ExpectMsgAsync<T>(T expected, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
        where T : notnull =>
        Check<T>(await ReceiveOneAsync(timeout, cancellationToken).ConfigureAwait(false), timeout, m => Equals(m, expected), $"equal to {expected}");

    /// <summary>Expects that nothing arrives for <paramref name="duration"/>.</summary>
    public void ExpectNoMsg(TimeSpan duration) => CheckNone(ReceiveOne(duration), duration);

    public async Task ExpectNoMsgAsync(TimeSpan duration, CancellationToken cancellationToken = default) =>
        CheckNone(await ReceiveOneAsync(duration, cancellationToken).ConfigureAwait(false), duration);

    /// <summary>Expects the <see cref="Terminated"/> of an actor watched with <see cref="Watch"/>.</summary>
    public Terminated ExpectTerminated(IActorRef actor, TimeSpan? timeout = null) =>
        ExpectMsg<Terminated>(t => t.ActorRef.Equals(actor), timeout);

    public Task<Terminated> ExpectTerminatedAsync(IActorRef actor, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        ExpectMsgAsync<Terminated>(t => t.ActorRef.Equals(actor), timeout, cancellationToken);

    /// <summary>Receives <paramref name="count"/> messages.</summary>
    public IReadOnlyList<object> ReceiveN(int count, TimeSpan? timeout = null)
    {
        var deadline = Deadline(timeout);
        var messages = new List<object>(count);
        while (messages.Count < count)
        {
            var item = ReceiveOne(Left(deadline))
                ?? throw Fail($"Timeout while waiting for message {messages.Count + 1} of {count}.");
            messages.Add(item.Message);
        }

        return messages;
    }

    /// <summary>Skips messages until one is a <typeparamref name="T"/> matching <paramref name="isMessage"/>.</summary>
    public T FishForMessage<T>(Predicate<T> isMessage, TimeSpan? timeout = null)
    {
        var deadline = Deadline(timeout);
        while (true)
        {
            var item = ReceiveOne(Left(deadline))
                ?? throw Fail($"Timeout while fishing for a message of type {typeof(T).Name}.");
            if (item.Message is T typed && isMessage(typed))
            {
                return typed;
            }
        }
    }

    /// <summary>Runs <paramref name="assertion"/> until it passes or <paramref name="duration"/> elapses (then rethrows).</summary>
    public void AwaitAssert(Action assertion, TimeSpan? duration = null, TimeSpan? interval = null)
    {
        var deadline = Deadline(duration);
        while (true)
        {
            try
            {
                assertion();
                return;
            }
            catch (Exception) when (Left(deadline) > TimeSpan.Zero)
            {
                Thread.Sleep(PollInterval(interval, deadline));
            }
        }
    }

    public async Task AwaitAssertAsync(Func<Task> assertion, TimeSpan? duration = null, TimeSpan? interval = null)
    {
        var deadline = Deadline(duration);
        while (true)
        {
            try
            {
                await assertion().ConfigureAwait(false);
                return;
            }
            catch (Exception) when (Left(deadline) > TimeSpan.Zero)
            {
                await Task.Delay(PollInterval(interval, deadline)).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Polls <paramref name="condition"/> until true; fails after <paramref name="max"/>.</summary>
    public void AwaitCondition(Func<bool> condition, TimeSpan? max = null, TimeSpan? interval = null, string? message = null)
    {
        var deadline = Deadline(max);
        while (!condition())
        {
            if (Left(deadline) <= TimeSpan.Zero)
            {
                throw Fail($"Condition not met within {RemainingOr(max)}{(message is null ? "" : ": " + message)}.");
            }

            Thread.Sleep(PollInterval(interval, deadline));
        }
    }

    public async Task AwaitConditionAsync(Func<bool> condition, TimeSpan? max = null, TimeSpan? interval = null, string? message = null)
    {
        var deadline = Deadline(max);
        while (!condition())
        {
            if (Left(deadline) <= TimeSpan.Zero)
            {
                throw Fail($"Condition not met within {RemainingOr(max)}{(message is null ? "" : ": " + message)}.");
            }

            await Task.Delay(PollInterval(interval, deadline)).ConfigureAwait(false);
        }
    }

    /// <summary>Runs a block that must finish within <paramref name="max"/>; expectations inside wait at most the time left.</summary>
    public void Within(TimeSpan max, Action action) => Within(TimeSpan.Zero, max, action);

    /// <summary>Runs a block that must take between <paramref name="min"/> and <paramref name="max"/>.</summary>
    public void Within(TimeSpan min, TimeSpan max, Action action) =>
        Within(min, max, () =>
        {
            action();
            return true;
        });

    public T Within<T>(TimeSpan max, Func<T> function) => Within(TimeSpan.Zero, max, function);

    public T Within<T>(TimeSpan min, TimeSpan max, Func<T> function)
    {
        var (start, previous) = EnterWithin(max);
        try
        {
            var result = function();
            CheckWithin(start, min, max);
            return result;
        }
        finally
        {
            _timing.Deadline = previous;
        }
    }

    public async Task WithinAsync(TimeSpan max, Func<Task> action)
    {
        var (start, previous) = EnterWithin(max);
        try
        {
            await action().ConfigureAwait(false);
            CheckWithin(start, TimeSpan.Zero, max);
        }
        finally
        {
            _timing.Deadline = previous;
        }
    }

    private (long Start, long? Previous) EnterWithin(TimeSpan max)
    {
        var start = Stopwatch.GetTimestamp();
        var previous = _timing.Deadline;
        var deadline = start + (long)(max.TotalSeconds * Stopwatch.Frequency);
        _timing.Deadline = previous is { } outer && outer < deadline ? outer : deadline;
        return (start, previous);
    }

    private static void CheckWithin(long start, TimeSpan min, TimeSpan max)
    {
        var elapsed = Stopwatch.GetElapsedTime(start);
        if (elapsed < min)
        {
            throw Fail($"Block took {elapsed.TotalMilliseconds:F0} ms, less than the minimum {min.TotalMilliseconds:F0} ms.");
        }

        if (elapsed > max)
        {
            throw Fail($"Block took {elapsed.TotalMilliseconds:F0} ms, more than the maximum {max.TotalMilliseconds:F0} ms.");
        }
    }

    private TimeSpan RemainingOr(TimeSpan? timeout)
    {
        var wanted = timeout ?? DefaultTimeout;
        if (_timing.Deadline is not { } deadline)
        {
            return wanted;
        }

        var left = Left(deadline);
        return left < wanted ? (left < TimeSpan.Zero ? TimeSpan.Zero : left) : wanted;
    }

    private long Deadline(TimeSpan? timeout) =>
        Stopwatch.GetTimestamp() + (long)(RemainingOr(timeout).TotalSeconds * Stopwatch.Frequency);

    private static TimeSpan Left(long deadline)
    {
        var ticks = deadline - Stopwatch.GetTimestamp();
        return ticks <= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds((double)ticks / Stopwatch.Frequency);
    }

    private static TimeSpan PollInterval(TimeSpan? interval, long deadline)
    {
        var wanted = interval ?? TimeSpan.FromMilliseconds(50);
        var left = Left(deadline);
        return left < wanted ? left : wanted;
    }

    private ReceivedMessage? Record(ReceivedMessage? item)
    {
        if (item is not null)
        {
            LastMessage = item.Message;
            LastSender = item.Sender;
        }

        return item;
    }

    private T Check<T>(ReceivedMessage? item, TimeSpan? timeout, Predicate<T>? predicate, string? what = null)
    {
        if (item is null)
        {
            throw Fail($"Timeout ({RemainingOr(timeout).TotalMilliseconds:F0} ms) while waiting for a message of type {typeof(T).Name}{(what is null ? "" : " " + what)}.");
        }

        if (item.Message is not T typed)
        {
            throw Fail($"Expected a message of type {typeof(T).Name}{(what is null ? "" : " " + what)}, but got {item.Message.GetType().Name}: {item.Message}.");
        }

        if (predicate is not null && !predicate(typed))
        {
            throw Fail($"Message {item.Message} did not match{(what is null ? " the predicate" : ": expected " + what)}.");
        }

        return typed;
    }

    private static void CheckNone(ReceivedMessage? item, TimeSpan duration)
    {
        if (item is not null)
        {
            throw Fail($"Expected no message for {duration.TotalMilliseconds:F0} ms, but got {item.Message.GetType().Name}: {item.Message}.");
        }
    }

    private static void AwaitRegistration(ManualResetEventSlim done, string what)
    {
        if (!done.Wait(DefaultTimeout))
        {
            throw Fail($"{what} was not registered by the test actor within {DefaultTimeout}.");
        }
    }

    private static Exception Fail(string message) => new Xunit.Sdk.XunitException(message);
}

/// <summary>The enclosing Within deadline (Stopwatch ticks), shared by a kit and its probes.</summary>
internal sealed class TimingState
{
    public long? Deadline;
    public int ActorCounter;
}
