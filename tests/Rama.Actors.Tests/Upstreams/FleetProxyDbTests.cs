using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Rama.Actors.Upstreams;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Tests.Upstreams;

/// <summary>
/// The fleet's proxy database on a one-node cluster (the proxy role, DistributedData's replicator): the partition entity
/// (validation, one write per command, two-phase load), the writer's all-or-none load, and the replica's rebuild.
/// </summary>
public sealed class FleetProxyDbTests : Akka.TestKit.Xunit2.TestKit
{
    private const string Config = """
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp.hostname = 127.0.0.1
        akka.remote.dot-netty.tcp.port = 0
        akka.cluster.roles = [proxy]
        akka.cluster.distributed-data.role = proxy
        akka.loglevel = WARNING
        """;

    private static readonly TimeSpan WriteTimeout = TimeSpan.FromSeconds(2);

    public FleetProxyDbTests()
        : base(Config)
    {
        var cluster = Cluster.Get(Sys);
        cluster.Join(cluster.SelfAddress);
        AwaitCondition(() => cluster.SelfMember.Status == MemberStatus.Up, TimeSpan.FromSeconds(10));
    }

    private IActorRef Replicator => DistributedData.Get(Sys).Replicator;

    private static string Line(string id, string country = "us", string address = "127.0.0.1:3128") =>
        $"{id},true,false,true,false,false,false,false,true,false,{address},,,{country},,,,";

    private IActorRef Entity(int partition) => Sys.ActorOf(ProxyDbPartitionActor.Props(partition, Replicator, WriteTimeout));

    private IReadOnlyDictionary<string, string> Stored(int partition)
    {
        var key = ProxyDbPartitions.Key(partition);
        Replicator.Tell(Dsl.Get(key, ReadLocal.Instance));
        return ExpectMsg<IGetResponse>() switch
        {
            GetSuccess s => ProxyDbPartitions.Records(s.Get(key)),
            _ => new Dictionary<string, string>(),
        };
    }

    [Fact]
    public void The_partition_of_an_id_is_stable_case_insensitive_and_in_range()
    {
        // Pinned: every node of every version must compute the same partition (FNV-1a 64, never string.GetHashCode).
        Assert.Equal(183, ProxyDbPartitions.Of("us-1"));
        Assert.Equal(ProxyDbPartitions.Of("us-1"), ProxyDbPartitions.Of("US-1"));
        Assert.All(Enumerable.Range(0, 10_000), i => Assert.InRange(ProxyDbPartitions.Of($"id-{i}"), 0, ProxyDbPartitions.Count - 1));
        Assert.Equal(ProxyDbPartitions.Count, Enumerable.Range(0, 10_000).Select(i => ProxyDbPartitions.Of($"id-{i}")).Distinct().Count());
    }

    [Fact]
    public void A_record_survives_the_CSV_line_the_fleet_stores_it_as()
    {
        var record = ProxyRecordCsv.ParseOne(
            "{\"id\":\"Mixed-Case\",\"tcp\":true,\"socks5\":true,\"mobile\":true,\"address\":\"socks5://[::1]:1080\",\"country\":\"us\",\"city\":\"new_york\",\"asn\":\"AS7922\",\"credential\":\"us,er:p\\\"a:ss\"}");
        var line = ProxyRecordCsv.Format(record);
        Assert.Equal(record, ProxyRecordCsv.ParseOne(line));
        Assert.Equal("p\"a:ss", record.Address.Credential!.Password);
    }

    [Fact]
    public void The_entity_refuses_a_bad_record_a_duplicate_id_and_a_record_of_another_partition_and_stores_a_good_one()
    {
        var partition = ProxyDbPartitions.Of("us-1");
        var entity = Entity(partition);

        entity.Tell(new AddProxyRecord(partition, Line("us-1", address: "nohostport")));
        var bad = ExpectMsg<ProxyDbWriteResult>();
        Assert.False(bad.Ok);
        Assert.Contains("field 'address'", bad.Message, StringComparison.Ordinal);

        entity.Tell(new AddProxyRecord(partition, Line("us-1")));
        var added = ExpectMsg<ProxyDbWriteResult>();
        Assert.True(added.Ok, added.Message);
        Assert.Equal("all", added.Replicated);
        Assert.Equal(ProxyRecordCsv.Format(ProxyRecordCsv.ParseOne(Line("us-1"))), Stored(partition)["us-1"]);

        entity.Tell(new AddProxyRecord(partition, Line("US-1", country: "de")));
        var duplicate = ExpectMsg<ProxyDbWriteResult>();
        Assert.False(duplicate.Ok);
        Assert.Contains("exists", duplicate.Message, StringComparison.Ordinal);

        var other = Enumerable.Range(0, 100).Select(i => $"other-{i}").First(id => ProxyDbPartitions.Of(id) != partition);
        entity.Tell(new AddProxyRecord(partition, Line(other)));
        Assert.Contains("belongs to partition", ExpectMsg<ProxyDbWriteResult>().Message, StringComparison.Ordinal);

        entity.Tell(new RemoveProxyRecord(partition, "US-1"));
        Assert.True(ExpectMsg<ProxyDbWriteResult>().Ok);
        Assert.Empty(Stored(partition));
        entity.Tell(new RemoveProxyRecord(partition, "us-1"));
        Assert.Contains("no record", ExpectMsg<ProxyDbWriteResult>().Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_prepared_load_changes_nothing_until_its_commit_and_an_aborted_one_never_does()
    {
        var partition = ProxyDbPartitions.Of("us-1");
        var entity = Entity(partition);
        var ids = Enumerable.Range(0, 5000).Select(i => $"load-{i}").Where(id => ProxyDbPartitions.Of(id) == partition).Take(3).ToArray();

        string[] bad = [Line(ids[0]), Line(ids[1], address: "x")];
        entity.Tell(new PrepareProxyLoad(partition, "bad", bad));
        Assert.False(ExpectMsg<ProxyDbWriteResult>().Ok);
        entity.Tell(new CommitProxyLoad(partition, "bad", bad));
        Assert.Contains("field 'address'", ExpectMsg<ProxyDbWriteResult>().Message, StringComparison.Ordinal);

        entity.Tell(new PrepareProxyLoad(partition, "aborted", [Line(ids[0])]));
        Assert.True(ExpectMsg<ProxyDbWriteResult>().Ok);
        entity.Tell(new AbortProxyLoad(partition, "aborted"));
        entity.Tell(new CommitProxyLoad(partition, "aborted", [Line(ids[0])]));
        Assert.Contains("aborted", ExpectMsg<ProxyDbWriteResult>().Message, StringComparison.Ordinal);
        Assert.Empty(Stored(partition));

        string[] good = [.. ids.Select(id => Line(id))];
        entity.Tell(new PrepareProxyLoad(partition, "good", good));
        Assert.True(ExpectMsg<ProxyDbWriteResult>().Ok);
        Assert.Empty(Stored(partition));
        entity.Tell(new CommitProxyLoad(partition, "good", good));
        Assert.True(ExpectMsg<ProxyDbWriteResult>().Ok);
        Assert.Equal(ids.Order(), Stored(partition).Keys.Order());
    }

    [Fact]
    public void A_commit_reaching_an_entity_that_started_after_the_prepare_applies_the_lines_it_carries()
    {
        var partition = ProxyDbPartitions.Of("us-1");
        var ids = Enumerable.Range(0, 5000).Select(i => $"moved-{i}").Where(id => ProxyDbPartitions.Of(id) == partition).Take(2).ToArray();
        string[] lines = [.. ids.Select(id => Line(id))];
        var before = Entity(partition);
        before.Tell(new PrepareProxyLoad(partition, "moving", lines));
        Assert.True(ExpectMsg<ProxyDbWriteResult>().Ok);
        Watch(before);
        Sys.Stop(before); // its node died: the prepared lines went with it
        ExpectTerminated(before);

        var after = Entity(partition);
        after.Tell(new CommitProxyLoad(partition, "moving", lines));
        Assert.True(ExpectMsg<ProxyDbWriteResult>().Ok);
        Assert.Equal(ids.Order(), Stored(partition).Keys.Order());
    }

    [Fact]
    public async Task A_load_that_one_partition_refuses_applies_nothing_anywhere()
    {
        var records = ProxyDatabaseLoader.ParseCsv(string.Join('\n', Enumerable.Range(0, 40).Select(i => Line($"rec-{i}"))));
        var refusing = ProxyDbPartitions.Of("rec-0");
        var region = Sys.ActorOf(Props.Create(() => new PartitionRouter(Replicator, refusing)));
        var writer = new ProxyDbWriter(region, TimeSpan.FromSeconds(5));

        var result = await writer.LoadAsync(records);

        Assert.False(result.Ok);
        Assert.Contains($"partition {refusing}: refused for the test", result.Problems[0], StringComparison.Ordinal);
        // Every partition that had prepared was told to abort; none applied.
        Assert.All(records.Select(r => ProxyDbPartitions.Of(r.Id)).Distinct(), p => Assert.Empty(Stored(p)));

        var accepted = new ProxyDbWriter(Sys.ActorOf(Props.Create(() => new PartitionRouter(Replicator, -1))), TimeSpan.FromSeconds(5));
        var loaded = await accepted.LoadAsync(records);
        Assert.True(loaded.Ok, string.Join("; ", loaded.Problems));
        Assert.Equal(40, records.Select(r => ProxyDbPartitions.Of(r.Id)).Distinct().Sum(p => Stored(p).Count));
    }

    [Fact]
    public async Task The_replica_rebuilds_its_snapshot_when_a_partition_changes_and_selects_from_it()
    {
        var replica = new FleetProxyDatabase();
        Sys.ActorOf(ProxyDbReplicaActor.Props(replica, Replicator));
        var writer = new ProxyDbWriter(Sys.ActorOf(Props.Create(() => new PartitionRouter(Replicator, -1))), TimeSpan.FromSeconds(5));

        Assert.True((await writer.AddAsync(ProxyRecordCsv.ParseOne(Line("us-1")))).Ok);
        Assert.True((await writer.AddAsync(ProxyRecordCsv.ParseOne(Line("de-1", country: "de")))).Ok);
        AwaitAssert(() => Assert.Equal(2, replica.Database.Count), TimeSpan.FromSeconds(5));
        var expected = ProxyDatabase.Create([ProxyRecordCsv.ParseOne(Line("us-1")), ProxyRecordCsv.ParseOne(Line("de-1", country: "de"))]);
        Assert.Equal(expected.Version, replica.Database.Version);
        Assert.Equal("de-1", replica.Database.Select(ProxyUsername.Parse("john-country-de").Filter, "42", 1).Single().Id);

        Assert.True((await writer.RemoveAsync("de-1")).Ok);
        AwaitAssert(() => Assert.Equal(1, replica.Database.Count), TimeSpan.FromSeconds(5));
        Assert.Empty(replica.Database.Select(ProxyUsername.Parse("john-country-de").Filter, "42", 1));
        Assert.True(replica.Updates >= 2);
    }

    [Fact]
    public void The_file_durable_store_gives_back_after_a_restart_what_it_stored_and_answers_each_store()
    {
        var directory = Directory.CreateTempSubdirectory("rama-durable-");
        try
        {
            var config = Akka.Configuration.ConfigurationFactory.ParseString($"{FileDurableStore.DirectoryKey} = \"{directory.FullName}\"");
            // As in a node, where the replicator creates the store: DistributedData's extension brings its serializers.
            Assert.NotNull(Replicator);
            var self = Cluster.Get(Sys).SelfUniqueAddress;
            var map = new LWWRegister<string>(self, ProxyDbPartitions.Encode(new Dictionary<string, string> { ["us-1"] = Line("us-1") }));

            var store = Sys.ActorOf(Props.Create(() => new FileDurableStore(config)));
            store.Tell(Akka.DistributedData.Durable.LoadAll.Instance);
            ExpectMsg<Akka.DistributedData.Durable.LoadAllCompleted>();
            store.Tell(new Akka.DistributedData.Durable.Store("proxydb-23", new Akka.DistributedData.Durable.DurableDataEnvelope(map),
                new Akka.DistributedData.Durable.StoreReply("stored", "failed", TestActor)));
            ExpectMsg("stored");
            Sys.Stop(store);

            var again = Sys.ActorOf(Props.Create(() => new FileDurableStore(config)));
            again.Tell(Akka.DistributedData.Durable.LoadAll.Instance);
            var loaded = ExpectMsg<Akka.DistributedData.Durable.LoadData>();
            ExpectMsg<Akka.DistributedData.Durable.LoadAllCompleted>();
            var restored = ProxyDbPartitions.Records((LWWRegister<string>)loaded.Data["proxydb-23"].Data);
            Assert.Equal(Line("us-1"), restored["us-1"]);
            Assert.Equal(["proxydb-23.ddata"], directory.EnumerateFiles().Select(f => f.Name));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    /// <summary>Stands in for the shard region: one real entity per partition, except <paramref name="refusing"/>, which refuses every prepare.</summary>
    private sealed class PartitionRouter : ReceiveActor
    {
        public PartitionRouter(IActorRef replicator, int refusing)
        {
            var entities = new Dictionary<int, IActorRef>();
            Receive<IProxyDbPartitionCommand>(command =>
            {
                if (command.Partition == refusing && command is PrepareProxyLoad)
                {
                    Sender.Tell(new ProxyDbWriteResult(command.Partition, false, "refused for the test"));
                    return;
                }

                if (!entities.TryGetValue(command.Partition, out var entity))
                {
                    entities[command.Partition] = entity = Context.ActorOf(ProxyDbPartitionActor.Props(command.Partition, replicator, WriteTimeout));
                }

                entity.Forward(command);
            });
        }
    }
}
