namespace Rama.Proxy.Tests.Support;

/// <summary>Mutates a valid message for property tests: cut to a length, then bytes overwritten.</summary>
public static class Mutations
{
    public static byte[] Apply(byte[] seed, IEnumerable<(int At, int Value)> mutations, int cut)
    {
        var copy = seed[..Math.Min(cut, seed.Length)];
        foreach (var (at, value) in mutations)
        {
            if (at < copy.Length)
            {
                copy[at] = (byte)value;
            }
        }

        return copy;
    }
}
