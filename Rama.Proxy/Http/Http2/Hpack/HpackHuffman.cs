namespace Rama.Proxy.Http.Http2.Hpack;

/// <summary>
/// RFC 7541 §5.2 and Appendix B: the static Huffman code of HPACK string literals.
/// The code is canonical (codes of one length are consecutive, in symbol order, and each length starts
/// where the shorter ones left off), so the table below keeps only the bit lengths of Appendix B and the
/// codes are derived from them; tests check derived codes against Appendix B.
/// Decoding walks a 4-bit state machine built once from the code tree (256 internal nodes x 16 nibbles):
/// two table lookups per input byte, at most one symbol per nibble since the shortest code has 5 bits.
/// </summary>
internal static class HpackHuffman
{
    /// <summary>The end-of-string symbol: 30 one-bits; its presence in a string is an error (RFC 7541 §5.2).</summary>
    public const int Eos = 256;

    // RFC 7541 Appendix B, "len in bits" column, symbols 0..256 (256 = EOS).
    private static ReadOnlySpan<byte> CodeLengths =>
    [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0..31
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // ' '..'?'
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // '@'..'_'
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // '`'..127
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 128..159
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 160..191
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 192..223
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 224..255
        30, // EOS
    ];

    private const uint Emit = 1u << 16;
    private const uint Fail = 1u << 17;

    private static readonly uint[] s_codes = BuildCanonicalCodes();

    // Initialised after s_codes (textual order), from which it is built.
    private static readonly StateMachine s_machine = BuildStateMachine();

    /// <summary>The Appendix B code of a symbol, right-aligned, and its length in bits.</summary>
    public static (uint Code, int Length) GetCode(int symbol) => (s_codes[symbol], CodeLengths[symbol]);

    /// <summary>The length in octets of <paramref name="source"/> once encoded (padding included).</summary>
    public static int GetEncodedLength(ReadOnlySpan<byte> source)
    {
        var bits = 0L;
        var lengths = CodeLengths;
        foreach (var b in source)
        {
            bits += lengths[b];
        }

        return (int)((bits + 7) >> 3);
    }

    /// <summary>Encodes into <paramref name="destination"/> (at least <see cref="GetEncodedLength"/> long), padding with the EOS prefix. Returns octets written.</summary>
    public static int Encode(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        ulong pending = 0;
        var pendingBits = 0;
        var written = 0;
        var lengths = CodeLengths;
        foreach (var b in source)
        {
            // pendingBits < 8 and a code has at most 30 bits: the 64-bit accumulator never loses a pending bit.
            pending = (pending << lengths[b]) | s_codes[b];
            pendingBits += lengths[b];
            while (pendingBits >= 8)
            {
                pendingBits -= 8;
                destination[written++] = (byte)(pending >> pendingBits);
            }
        }

        if (pendingBits > 0)
        {
            // RFC 7541 §5.2: pad with the most significant bits of EOS (all ones).
            destination[written++] = (byte)((pending << (8 - pendingBits)) | (0xFFu >> pendingBits));
        }

        return written;
    }

    /// <summary>The most octets <paramref name="encodedLength"/> octets can decode to (the shortest code has 5 bits).</summary>
    public static int GetMaxDecodedLength(int encodedLength) => (int)(encodedLength * 8L / 5);

    /// <summary>
    /// Decodes into <paramref name="destination"/> (at least <see cref="GetMaxDecodedLength"/> long, or
    /// shorter to cap the output: then <see cref="HpackError.StringTooLong"/> when it would overflow).
    /// Returns octets written. Throws <see cref="HpackError.InvalidHuffman"/> for EOS in the string or bad padding.
    /// </summary>
    public static int Decode(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        var transitions = s_machine.Transitions;
        var state = 0u;
        var written = 0;
        foreach (var b in source)
        {
            var t = transitions[(state << 4) | (uint)(b >> 4)];
            if ((t & (Emit | Fail)) != 0)
            {
                written = Step(t, destination, written);
            }

            state = t & 0xFF;
            t = transitions[(state << 4) | (uint)(b & 0xF)];
            if ((t & (Emit | Fail)) != 0)
            {
                written = Step(t, destination, written);
            }

            state = t & 0xFF;
        }

        if (!s_machine.Accepting[state])
        {
            HpackErrors.Throw(HpackError.InvalidHuffman);
        }

        return written;
    }

    private static int Step(uint transition, Span<byte> destination, int written)
    {
        if ((transition & Fail) != 0)
        {
            HpackErrors.Throw(HpackError.InvalidHuffman);
        }

        if ((uint)written >= (uint)destination.Length)
        {
            HpackErrors.Throw(HpackError.StringTooLong);
        }

        destination[written] = (byte)(transition >> 8);
        return written + 1;
    }

    private static uint[] BuildCanonicalCodes()
    {
        var lengths = CodeLengths;
        var symbols = new int[lengths.Length];
        for (var i = 0; i < symbols.Length; i++)
        {
            symbols[i] = i;
        }

        var keys = new int[lengths.Length];
        for (var i = 0; i < keys.Length; i++)
        {
            keys[i] = (lengths[i] << 9) | i; // order by length, then symbol
        }

        Array.Sort(keys, symbols);
        var codes = new uint[lengths.Length];
        var code = 0u;
        var previousLength = lengths[symbols[0]];
        for (var i = 0; i < symbols.Length; i++)
        {
            var length = lengths[symbols[i]];
            if (i > 0)
            {
                code = (code + 1) << (length - previousLength);
            }

            codes[symbols[i]] = code;
            previousLength = length;
        }

        return codes;
    }

    private static StateMachine BuildStateMachine()
    {
        // The code tree: internal nodes 0..255 (0 = root); a child >= 0 is a node, < 0 is leaf ~symbol.
        var children = new int[2][];
        children[0] = new int[256];
        children[1] = new int[256];
        var depth = new int[256];
        var allOnes = new bool[256];
        allOnes[0] = true;
        var nodes = 1;
        var lengths = CodeLengths;
        for (var symbol = 0; symbol <= Eos; symbol++)
        {
            var node = 0;
            for (var bit = lengths[symbol] - 1; bit > 0; bit--)
            {
                var branch = (int)(s_codes[symbol] >> bit) & 1;
                if (children[branch][node] == 0)
                {
                    children[branch][node] = nodes;
                    depth[nodes] = depth[node] + 1;
                    allOnes[nodes] = allOnes[node] && branch == 1;
                    nodes++;
                }

                node = children[branch][node];
            }

            children[(int)(s_codes[symbol] & 1)][node] = ~symbol;
        }

        var transitions = new uint[256 * 16];
        var accepting = new bool[256];
        for (var state = 0; state < nodes; state++)
        {
            // RFC 7541 §5.2: a string may end inside a code only on a prefix of EOS (all ones) shorter than 8 bits.
            accepting[state] = allOnes[state] && depth[state] <= 7;
            for (var nibble = 0; nibble < 16; nibble++)
            {
                var node = state;
                uint result = 0;
                for (var bit = 3; bit >= 0; bit--)
                {
                    var child = children[(nibble >> bit) & 1][node];
                    if (child >= 0)
                    {
                        node = child;
                        continue;
                    }

                    var symbol = ~child;
                    result |= symbol == Eos ? Fail : Emit | ((uint)symbol << 8);
                    node = 0;
                }

                transitions[(state << 4) | nibble] = result | (uint)node;
            }
        }

        return new StateMachine(transitions, accepting);
    }

    /// <param name="Transitions">Per (state &lt;&lt; 4 | nibble): next state (bits 0..7), symbol (bits 8..15), Emit, Fail.</param>
    /// <param name="Accepting">Per state: ending a string there is valid (RFC 7541 §5.2: padding of at most 7 one-bits).</param>
    private sealed record StateMachine(uint[] Transitions, bool[] Accepting);
}
