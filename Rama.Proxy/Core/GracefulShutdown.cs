namespace Rama.Proxy.Core;

/// <summary>
/// Graceful shutdown: a token that says "stop taking new work" plus counted guards held by work
/// in flight; the host triggers it and awaits the guards with a timeout.
/// </summary>
public sealed class GracefulShutdown : IDisposable
{
    private readonly CancellationTokenSource _requested = new();
    private readonly object _gate = new();
    private TaskCompletionSource? _idle;
    private int _active;

    /// <summary>
    /// How long a connection accepted before the shutdown still has for its first request (or first bytes) once the
    /// shutdown has begun: its client sent it before it could see any sign of the shutdown.
    /// </summary>
    public static readonly TimeSpan FirstRequestGrace = TimeSpan.FromSeconds(2);

    /// <summary>Cancelled when shutdown is requested: stop accepting, finish what is in flight.</summary>
    public CancellationToken ShutdownRequested => _requested.Token;

    public bool IsShutdownRequested => _requested.IsCancellationRequested;

    /// <summary>Number of guards held (work in flight).</summary>
    public int ActiveGuards => Volatile.Read(ref _active);

    /// <summary>Takes a guard; dispose it when the work is done.</summary>
    public ShutdownGuard Guard()
    {
        lock (_gate)
        {
            _active++;
        }

        return new ShutdownGuard(this);
    }

    public void RequestShutdown()
    {
        try
        {
            _requested.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Waits until no guard is held; true if that happened within <paramref name="timeout"/>.</summary>
    public async Task<bool> WaitForIdleAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        Task idle;
        lock (_gate)
        {
            if (_active == 0)
            {
                return true;
            }

            _idle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            idle = _idle.Task;
        }

        try
        {
            await idle.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    internal void Release()
    {
        TaskCompletionSource? idle = null;
        lock (_gate)
        {
            _active--;
            if (_active == 0)
            {
                idle = _idle;
                _idle = null;
            }
        }

        idle?.TrySetResult();
    }

    public void Dispose() => _requested.Dispose();
}

/// <summary>A unit of work in flight; disposing it releases it once.</summary>
public sealed class ShutdownGuard : IDisposable
{
    private GracefulShutdown? _owner;

    internal ShutdownGuard(GracefulShutdown owner) => _owner = owner;

    public CancellationToken ShutdownRequested => _owner?.ShutdownRequested ?? CancellationToken.None;

    public void Dispose() => Interlocked.Exchange(ref _owner, null)?.Release();
}
