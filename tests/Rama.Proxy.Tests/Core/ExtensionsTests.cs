using Rama.Proxy.Core;

namespace Rama.Proxy.Tests.Core;

/// <summary>The typed bag every connection and request carries: one value per type, a request's reads falling back to its connection's.</summary>
public sealed class ExtensionsTests
{
    private sealed record A(int N);

    private sealed record B(string S);

    [Fact]
    public void One_value_per_type_set_again_replaces_and_remove_takes_it_out()
    {
        var bag = new Extensions();
        Assert.Null(bag.Get<A>());
        Assert.False(bag.Remove<A>());

        bag.Set(new A(1));
        bag.Set(new B("b"));
        bag.Set(new A(2));
        Assert.Equal(new A(2), bag.Get<A>());
        Assert.Equal(new B("b"), bag.Get<B>());

        Assert.True(bag.Remove<A>());
        Assert.Null(bag.Get<A>());
        Assert.Equal(new B("b"), bag.Get<B>()); // what came after the removed one is still found
        Assert.False(bag.Remove<A>());
    }

    [Fact]
    public void Many_types_each_keep_their_value_and_value_types_work()
    {
        var bag = new Extensions();
        bag.Set(new A(1));
        bag.Set(new B("b"));
        bag.Set(42);
        bag.Set(7L);
        bag.Set("text");
        bag.Set(TimeSpan.FromSeconds(3));
        bag.Set(Guid.Empty);
        Assert.True(bag.TryGet<int>(out var i) && i == 42);
        Assert.True(bag.TryGet<long>(out var l) && l == 7L);
        Assert.Equal("text", bag.Get<string>());
        Assert.True(bag.TryGet<TimeSpan>(out var t) && t == TimeSpan.FromSeconds(3));
        Assert.True(bag.Contains<Guid>());
        Assert.Equal(new A(1), bag.Get<A>());
        Assert.True(bag.Remove<int>());
        Assert.False(bag.Contains<int>());
        Assert.Equal("text", bag.Get<string>());
    }

    [Fact]
    public void A_child_bag_reads_through_to_its_parent_and_its_own_values_win()
    {
        var connection = new Extensions();
        connection.Set(new A(1));
        connection.Set(new B("connection"));
        var request = new Extensions(connection);
        request.Set(new B("request"));

        Assert.Equal(new A(1), request.Get<A>());
        Assert.Equal(new B("request"), request.Get<B>());
        Assert.Equal(new B("connection"), connection.Get<B>());
        Assert.False(request.Remove<A>()); // the parent's value is not the child's to remove
        Assert.Equal(new A(1), connection.Get<A>());
    }
}
