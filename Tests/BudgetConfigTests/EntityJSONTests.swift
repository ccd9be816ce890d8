import BudgetConfig
import BudgetJSON
import EntityCodec
import Testing

@Suite("Entities as the wire and the store write them")
struct EntityJSONTests {
    func roundTrip(_ entity: Entity) throws -> Entity {
        try Entity(codecBytes: entity.codecBytes)
    }

    @Test("every entity of the fixture reads back equal, secrets and key hints included")
    func fixture() throws {
        let state = load(try fixtureText()).state
        #expect(!state.isEmpty)
        for entity in state.sortedEntities {
            let back = try roundTrip(entity)
            #expect(back == entity, "\(entity.id)")
            if case .keyAuth(let credential) = entity, case .keyAuth(let read) = back {
                #expect(read.keyHint == credential.keyHint)
            }
        }
        let text = String(decoding: state.sortedEntities.flatMap(\.codecBytes), as: UTF8.self)
        #expect(!text.contains("[masked]"), "the wire form carries secrets in the clear (the store is 0600)")
    }

    @Test("generated states read back equal", arguments: 0..<40)
    func generated(seed: UInt64) throws {
        var generator = StateGenerator(seed: seed)
        let state = generator.state()
        let bytes = EntityCodec.compactJSON(state.codecFields)
        #expect(try ConfigState(codecJSON: JSONParser.parse(bytes)) == state, "seed \(seed)")
    }

    @Test("Redis settings, nodes and password survive")
    func redis() throws {
        var config = AIRateLimitingAdvancedConfig()
        config.llmProviders = [.init(name: "bedrock", windows: [.init(limit: 0.25, windowSize: 60)])]
        var redis = AIRateLimitingAdvancedConfig.RedisSettings()
        redis.host = "redis.internal"
        redis.password = Secret("p@ss\"word")
        redis.sentinelNodes = ["10.0.0.1:26379", "[::1]:26380"]
        redis.clusterNodes = ["c1:7000"]
        redis.ssl = true
        config.redis = redis
        config.namespace = "tier-a"
        config.syncRate = 0.5
        let entity = Entity.plugin(
            Plugin(config: .aiRateLimitingAdvanced(config), scope: PluginScope(consumerGroup: "g")))
        #expect(try roundTrip(entity) == entity)
    }

    @Test(
        "bad entity JSON is refused with the member's path",
        arguments: [
            (#"{"kind":"consumer","username":"a","tags":[],"extra":1}"#, "has unknown member(s): \"extra\""),
            (#"{"kind":"consumer","tags":[]}"#, "needs a username or a custom_id"),
            (#"{"kind":"gizmo"}"#, "kind \"gizmo\" is not a kind of entity"),
            (#"{"kind":"consumer","username":7,"tags":[]}"#, "username must be a string, found a number"),
            (#"{"kind":"consumer","username":"a","tags":["x",1]}"#, "tags[1] must be a string, found a number"),
            (#"{"kind":"key-auth","consumer":"a","key_hash":"sha256:ABC","tags":[]}"#, "key_hash must be sha256:"),
            (
                #"{"kind":"service","name":"s","protocol":"http","host":"h","port":"80","connect_timeout":1,"read_timeout":1,"write_timeout":1,"retries":1,"enabled":true,"tags":[]}"#,
                "port must be a whole number, found a string"
            ),
            (
                #"{"kind":"plugin","name":"ai-proxy","enabled":true,"protocols":[],"tags":[],"config":{"route_type":"llm/v1/chat","auth":{"allow_override":false},"model":{"provider":"bedrock","options":{"top_k":1.5}},"response_streaming":"allow","model_name_header":true,"logging":{"log_statistics":false}}}"#,
                "config.model.options.top_k must be a whole number"
            ),
            (
                #"{"kind":"plugin","name":"cors","enabled":true,"protocols":[],"tags":[],"config":{}}"#,
                "config belongs to plugin \"cors\", which this gateway does not run"
            ),
            (#"[1]"#, "expected an object, found an array"),
            (#"{"kind":"consumer","username":"a""#, "invalid JSON at byte"),
        ])
    func refused(json: String, message: String) {
        do {
            let entity = try Entity(codecBytes: Array(json.utf8))
            Issue.record("accepted \(entity.id)")
        } catch {
            #expect(error.description.contains(message), "\(error.description)")
        }
    }
}
