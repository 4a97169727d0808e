using System.Collections.Concurrent;
using System.Globalization;

namespace Rama.Proxy.Limits;

/// <summary>
/// Limits held in this process (a node alone): a count of held leases and a token bucket per (scope, key). A key without a
/// rate is dropped when its last lease goes; a rate-limited key stays while its bucket refills (dropped at a later release
/// with a full bucket), so memory is bounded by the keys in use: upstream records and users.
/// </summary>
public sealed class LocalConcurrencyLimiter(TimeProvider? time = null) : IConcurrencyLimiter
{
    private readonly ConcurrentDictionary<(LimitScope, string), Slot> _slots = new();
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>Keys with state (held leases or a bucket refilling).</summary>
    public int Keys => _slots.Count;

    /// <summary>Leases held on a key now.</summary>
    public int Held(LimitScope scope, string key) => _slots.TryGetValue((scope, key), out var slot) ? slot.Held : 0;

    public ValueTask<LimitLease> AcquireAsync(LimitScope scope, string key, LimitPolicy policy, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(policy);
        if (policy.IsUnlimited)
        {
            return ValueTask.FromResult(LimitLease.Unlimited);
        }

        var id = (scope, key);
        while (true)
        {
            var slot = _slots.GetOrAdd(id, static _ => new Slot());
            lock (slot)
            {
                if (slot.Removed)
                {
                    continue; // emptied and dropped between the lookup and the lock: take a fresh one
                }

                var now = _time.GetTimestamp();
                if (policy.MaxConcurrent is { } max && slot.Held >= max)
                {
                    return ValueTask.FromResult(LimitLease.Refused(Describe(scope, key, $"at its limit of {max.ToString(CultureInfo.InvariantCulture)} connections"), TimeSpan.FromSeconds(1)));
                }

                if (policy.Rate is { } rate && !slot.TryTake(rate, now, _time.TimestampFrequency, out var wait))
                {
                    return ValueTask.FromResult(LimitLease.Refused(Describe(scope, key, $"over its rate of {rate} new {RateUnit(scope)}"), wait));
                }

                slot.Held++;
                return ValueTask.FromResult(LimitLease.Granted(() => Release(id, slot)));
            }
        }
    }

    /// <summary>What a rate counts: new connections to an upstream, a user's requests (each request, CONNECT and SOCKS5 CONNECT).</summary>
    internal static string RateUnit(LimitScope scope) => scope == LimitScope.Upstream ? "connections" : "requests";

    internal static string Describe(LimitScope scope, string key, string what) =>
        scope == LimitScope.Upstream ? $"upstream {key} is {what}" : $"user {key} is {what}";

    private void Release((LimitScope, string) id, Slot slot)
    {
        lock (slot)
        {
            slot.Held--;
            if (slot.Held == 0 && slot.BucketFull(_time.GetTimestamp(), _time.TimestampFrequency))
            {
                slot.Removed = true;
                _slots.TryRemove(new KeyValuePair<(LimitScope, string), Slot>(id, slot));
            }
        }
    }

    private sealed class Slot
    {
        public int Held;
        public bool Removed;
        private double _tokens = double.NaN;
        private long _at;
        private LimitRate _rate;

        public bool TryTake(LimitRate rate, long now, long frequency, out TimeSpan wait)
        {
            if (double.IsNaN(_tokens) || rate != _rate)
            {
                (_tokens, _at, _rate) = (rate.Count, now, rate);
            }

            _tokens = Math.Min(rate.Count, _tokens + ((now - _at) / (double)frequency * rate.PerSecond));
            _at = now;
            if (_tokens >= 1)
            {
                _tokens -= 1;
                wait = TimeSpan.Zero;
                return true;
            }

            wait = TimeSpan.FromSeconds(Math.Max((1 - _tokens) / rate.PerSecond, 0.001));
            return false;
        }

        public bool BucketFull(long now, long frequency) =>
            double.IsNaN(_tokens) || _tokens + ((now - _at) / (double)frequency * _rate.PerSecond) >= _rate.Count;
    }
}
