using System.Text;

namespace Rama.Admin.Logging;

/// <summary>
/// Whole lines to a stream (standard output), written by one thread in batches: whatever accumulated while the last
/// write ran goes out in the next single write. An idle process writes each line at once (the writer is woken); a busy
/// one writes many lines per syscall and wakes nobody, where the console logger's processor wrote every line with its
/// own <c>write</c> and was woken for most of them (measured on the TLS listener, whose per-request fingerprint line is
/// Information: one <c>write</c> and ~1.8 <c>futex</c> per request). Memory is bounded: a writer finding
/// <see cref="MaxBufferedBytes"/> waiting blocks until the stream takes them (the console logger's default
/// <c>QueueFullMode.Wait</c>), or drops the line and counts it when told to.
/// </summary>
internal sealed class ConsoleLineSink : IDisposable
{
    /// <summary>Bytes a sink holds before writers wait (or drop): about 4,000 access-log-sized lines.</summary>
    public const int MaxBufferedBytes = 1024 * 1024;

    /// <summary>How long the writer collects lines after the first one of a batch woke it: the most a line waits.</summary>
    private static readonly TimeSpan CollectWindow = TimeSpan.FromMilliseconds(2);

    /// <summary>A batch this large is written without waiting out the window.</summary>
    private const int CollectBytes = 64 * 1024;

    private readonly Stream _stream;
    private readonly bool _dropWhenFull;
    private readonly object _gate = new();
    private readonly Thread _thread;
    private byte[] _pending = new byte[16 * 1024];
    private byte[] _writing = new byte[16 * 1024];
    private int _pendingLength;
    private long _appended; // bytes taken since the start (under _gate)
    private long _written;  // bytes the stream has taken (under _gate)
    private bool _writerWaiting;
    private bool _disposed;
    private long _dropped;

    public ConsoleLineSink(Stream stream, bool dropWhenFull = false)
    {
        _stream = stream;
        _dropWhenFull = dropWhenFull;
        _thread = new Thread(Run) { IsBackground = true, Name = "rama-console-log" };
        _thread.UnsafeStart();
    }

    /// <summary>Lines dropped because the buffer was full (only with drop-when-full).</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>A write to the stream failed (a closed pipe): later lines are discarded, never thrown at the caller.</summary>
    public bool Broken { get; private set; }

    /// <summary>Appends one line (the text must end with its newline). Never throws for the stream's sake.</summary>
    public void Append(ReadOnlySpan<char> line)
    {
        var byteCount = Encoding.UTF8.GetByteCount(line);
        lock (_gate)
        {
            if (Broken)
            {
                return;
            }

            if (_disposed)
            {
                WriteNowLocked(line); // logged after the host disposed the provider (a last line on the way out): written at once
                return;
            }

            while (_pendingLength > 0 && _pendingLength + byteCount > MaxBufferedBytes)
            {
                if (_dropWhenFull)
                {
                    _dropped++;
                    return;
                }

                Monitor.Wait(_gate);
                if (_disposed || Broken)
                {
                    return;
                }
            }

            if (_pendingLength + byteCount > _pending.Length)
            {
                Array.Resize(ref _pending, Math.Max(_pendingLength + byteCount, Math.Min(_pending.Length * 2, MaxBufferedBytes)));
            }

            _pendingLength += Encoding.UTF8.GetBytes(line, _pending.AsSpan(_pendingLength));
            _appended += byteCount;
            if (_writerWaiting || (_pendingLength >= CollectBytes && _pendingLength - byteCount < CollectBytes))
            {
                _writerWaiting = false;
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>Waits (up to <paramref name="timeout"/>) until every line appended before the call has been written.</summary>
    public bool Flush(TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        lock (_gate)
        {
            var target = _appended;
            while (_written < target && !Broken)
            {
                var left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    return false;
                }

                if (_writerWaiting)
                {
                    _writerWaiting = false;
                    Monitor.PulseAll(_gate);
                }

                Monitor.Wait(_gate, (int)Math.Min(left, int.MaxValue));
            }

            return true;
        }
    }

    private void Run()
    {
        while (true)
        {
            int length;
            lock (_gate)
            {
                while (_pendingLength == 0)
                {
                    if (_disposed)
                    {
                        return;
                    }

                    _writerWaiting = true;
                    Monitor.Wait(_gate);
                    if (_pendingLength > 0 && !_disposed && _pendingLength < CollectBytes)
                    {
                        // Woken by the first line of a batch: collect for a moment (the lines logged meanwhile do not wake
                        // this thread), so a busy process pays one wake-up and one write per window, not per line.
                        Monitor.Wait(_gate, CollectWindow);
                    }
                }

                (_pending, _writing) = (_writing, _pending);
                length = _pendingLength;
                _pendingLength = 0;
                Monitor.PulseAll(_gate); // writers waiting for room
            }

            try
            {
                _stream.Write(_writing, 0, length);
                _stream.Flush();
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or NotSupportedException)
            {
                lock (_gate)
                {
                    Broken = true; // stdout closed: nowhere to write; the process goes on
                    Monitor.PulseAll(_gate);
                }
            }

            lock (_gate)
            {
                _written += length;
                if (_writing.Length > 64 * 1024 && length < 16 * 1024)
                {
                    _writing = new byte[16 * 1024]; // a burst grew it: give the memory back once writes are small again
                }

                Monitor.PulseAll(_gate); // Flush waiters
            }
        }
    }

    private void WriteNowLocked(ReadOnlySpan<char> line)
    {
        try
        {
            var bytes = new byte[Encoding.UTF8.GetByteCount(line)];
            Encoding.UTF8.GetBytes(line, bytes);
            _stream.Write(bytes, 0, bytes.Length);
            _stream.Flush();
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or NotSupportedException)
        {
            Broken = true;
        }
    }

    public void Dispose()
    {
        Flush(TimeSpan.FromSeconds(5));
        lock (_gate)
        {
            _disposed = true;
            Monitor.PulseAll(_gate);
        }

        _thread.Join(TimeSpan.FromSeconds(5));
    }
}
