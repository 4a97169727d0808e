using System.Text;

namespace Rama.Actors.Actor;

/// <summary>
/// The logical location of an actor: an <see cref="Address"/> and the names from the root,
/// e.g. <c>rama://fleet@10.0.0.1:4054/user/listener</c>. Two paths are equal when address and
/// elements are equal; the <see cref="Uid"/> tells incarnations apart and is compared by
/// <see cref="IActorRef"/> equality, not here (as in Akka).
/// </summary>
public sealed class ActorPath : IEquatable<ActorPath>
{
    /// <summary>The uid of a path that names no particular incarnation.</summary>
    public const int UndefinedUid = 0;

    private readonly ActorPath? _parent;
    private readonly int _depth;

    private ActorPath(Address address, ActorPath? parent, string name, int uid)
    {
        Address = address;
        _parent = parent;
        Name = name;
        Uid = uid;
        _depth = parent is null ? 0 : parent._depth + 1;
    }

    /// <summary>The root path of a system: <c>rama://system/</c>.</summary>
    public static ActorPath Root(Address address) => new(address, null, "/", UndefinedUid);

    public Address Address { get; }

    /// <summary>The last element; <c>/</c> for the root.</summary>
    public string Name { get; }

    /// <summary>The incarnation of the actor; <see cref="UndefinedUid"/> when unknown.</summary>
    public int Uid { get; }

    /// <summary>The parent path; the root is its own parent.</summary>
    public ActorPath Parent => _parent ?? this;

    public ActorPath RootPath => _parent is null ? this : _parent.RootPath;

    /// <summary>The names below the root, e.g. <c>["user", "listener"]</c>.</summary>
    public IReadOnlyList<string> Elements
    {
        get
        {
            var elements = new string[_depth];
            for (var p = this; p._parent is not null; p = p._parent)
            {
                elements[p._depth - 1] = p.Name;
            }

            return elements;
        }
    }

    /// <summary>A child path.</summary>
    public static ActorPath operator /(ActorPath parent, string name) => parent.Child(name);

    public ActorPath Child(string name) => new(Address, this, name, UndefinedUid);

    public ActorPath WithUid(int uid) => uid == Uid ? this : new ActorPath(Address, _parent, Name, uid);

    /// <summary>The path without address: <c>/user/listener</c>.</summary>
    public string ToStringWithoutAddress()
    {
        if (_parent is null)
        {
            return "/";
        }

        var sb = new StringBuilder();
        AppendElements(sb);
        return sb.ToString();
    }

    /// <summary>The full path with a different address (e.g. the node's public address).</summary>
    public string ToStringWithAddress(Address address) => address + ToStringWithoutAddress();

    /// <summary>The full path followed by <c>#uid</c> when known; what goes on the wire.</summary>
    public string ToSerializationFormat() => Uid == UndefinedUid ? ToString() : $"{this}#{Uid}";

    public override string ToString() => ToStringWithAddress(Address);

    /// <summary>Parses <c>rama://system[@host:port]/a/b[#uid]</c>.</summary>
    public static ActorPath Parse(string text)
    {
        if (!TryParse(text, out var path))
        {
            throw new FormatException($"'{text}' is not an actor path.");
        }

        return path;
    }

    public static bool TryParse(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ActorPath? path)
    {
        path = null;
        var uid = UndefinedUid;
        var hash = text.LastIndexOf('#');
        if (hash >= 0)
        {
            if (!int.TryParse(text.AsSpan(hash + 1), out uid))
            {
                return false;
            }

            text = text[..hash];
        }

        var schemeEnd = text.IndexOf("://", StringComparison.Ordinal);
        if (schemeEnd <= 0)
        {
            return false;
        }

        var slash = text.IndexOf('/', schemeEnd + 3);
        var addressText = slash < 0 ? text : text[..slash];
        if (!Address.TryParse(addressText, out var address))
        {
            return false;
        }

        var current = Root(address);
        if (slash >= 0)
        {
            foreach (var element in text[(slash + 1)..].Split('/', StringSplitOptions.RemoveEmptyEntries))
            {
                current = current / element;
            }
        }

        path = current.WithUid(uid);
        return true;
    }

    public bool Equals(ActorPath? other)
    {
        if (ReferenceEquals(this, other))
        {
            return true;
        }

        if (other is null || _depth != other._depth || !Address.Equals(other.Address))
        {
            return false;
        }

        for (ActorPath? a = this, b = other; a is not null && b is not null; a = a._parent, b = b._parent)
        {
            if (!string.Equals(a.Name, b.Name, StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    public override bool Equals(object? obj) => obj is ActorPath other && Equals(other);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Address);
        for (var p = this; p is not null; p = p._parent)
        {
            hash.Add(p.Name, StringComparer.Ordinal);
        }

        return hash.ToHashCode();
    }

    public static bool operator ==(ActorPath? left, ActorPath? right) => left is null ? right is null : left.Equals(right);

    public static bool operator !=(ActorPath? left, ActorPath? right) => !(left == right);

    private void AppendElements(StringBuilder sb)
    {
        if (_parent is null)
        {
            return;
        }

        _parent.AppendElements(sb);
        sb.Append('/').Append(Name);
    }
}
