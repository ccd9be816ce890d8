import BudgetConfig
import Testing

/// A long `consumers` list is read in parts on several threads (`ConfigLoader.load(workers:)`); what comes out
/// must be what one thread reading it in order gives, problems and their places included.
@Suite("Consumers read in parts on several threads")
struct ParallelDecodeTests {
    /// 5,000 consumers (four parts of 1,250 with four workers) with a problem of each kind placed across parts.
    static let text: String = {
        var text = minimalFile(
            """
            consumer_groups:
              - name: gold
                consumers: [user-3001]
            consumers:

            """)
        for index in 0..<5_000 {
            var username = "user-\(index)"
            var key = "key-\(index)"
            var group = "gold"
            var extra = ""
            switch index {
            case 3_000: username = "user-10"  // defined in the first part too
            case 3_200: username = "user-3100"  // twice within one part
            case 4_500: key = "key-20"  // a key of the first part
            case 2_600: group = "silver"  // a group nobody defines
            case 4_000: extra = "    usrname: typo\n"
            case 1_500, 3_500:
                // A field that has no effect, warned about once for the whole file.
                extra = "    plugins:\n      - name: key-auth\n        ordering: {before: {access: [acl]}}\n"
            case 2_000:
                // An aliased plugin list without a name: an error and a warning at one place, then the error again
                // where the alias is used; messages at one place keep the order they were found in.
                extra = "    plugins: &unnamed\n      - ordering: {before: {access: [acl]}}\n        instance_name: x\n"
            case 2_001: extra = "    plugins: *unnamed\n"
            default: break
            }
            // A duplicate whose first key is itself an error: two messages at the mapping's one place.
            let first = index == 4_200 ? "acls: [x]\n    username: user-30" : "username: \(username)"
            text += "  - \(first)\n    keyauth_credentials: [{key: \(key)}]\n"
            text += "    groups: [{name: \(group)}]\n" + extra
        }
        return text
    }()

    @Test("four workers give the state, errors, warnings and places one worker gives")
    func sameAsOneThread() {
        let source = [ConfigSource(name: "config.yaml", text: Self.text)]
        let serial = ConfigLoader.load(source, environment: [:], workers: 1)
        let parallel = ConfigLoader.load(source, environment: [:], workers: 4)
        #expect(parallel.state == serial.state)
        #expect(parallel.diagnostics.rendered == serial.diagnostics.rendered)
        #expect(parallel.state.count == serial.state.count)

        // The problems are there, each once: the comparison above is not of two empty lists.
        let lines = parallel.diagnostics.rendered
        func count(_ fragment: String) -> Int { lines.filter { $0.contains(fragment) }.count }
        #expect(count("consumer \"user-10\" is defined more than once (first at config.yaml:") == 1)
        #expect(count("consumer \"user-3100\" is defined more than once") == 1)
        #expect(count("this key is already the key of consumer user-20") == 1)
        #expect(count("consumer group \"silver\" is not defined") == 1)
        #expect(count("unknown field \"usrname\" in consumer; did you mean \"username\"?") == 1)
        #expect(count("plugin field ordering has no effect") == 1)
        #expect(count("consumers[2001].plugins[0]: name is required") == 1)
        #expect(count("consumers[4200].acls: only key-auth credentials") == 1)
        #expect(count("consumer \"user-30\" is defined more than once") == 1)
        // The warning is given at the first consumer that has the field, whichever thread read the second.
        let line = lines.first { $0.contains("ordering has no effect") } ?? ""
        #expect(line.contains("consumers[1500].plugins[0].ordering"))
        // The membership written both ways (the group's list and the consumer's) is one entity, not an error.
        #expect(count("user-3001 in gold") == 0)
        #expect(parallel.state[EntityID(.consumerGroupConsumer, "user-3001 in gold")] != nil)
    }

    @Test("past the 500-message limit, the same messages are kept and the same number left out")
    func pastTheLimit() {
        var text = minimalFile("consumers:\n")
        for index in 0..<3_000 {
            switch index {
            case 1_600:
                text += "  - username: user-\(index)\n    plugins:\n      - name: key-auth\n"
                text += "        ordering: {before: {access: [acl]}}\n"
            case 1_700..<2_300 where index % 3 == 0: text += "  - username: user-\(index - 1_000)\n"
            case 1_700..<2_300: text += "  - username: user-\(index)\n    keyauth_credentials: 5\n"
            default: text += "  - username: user-\(index)\n"
            }
        }
        let source = [ConfigSource(name: "config.yaml", text: text)]
        let serial = ConfigLoader.load(source, environment: [:], workers: 1)
        let parallel = ConfigLoader.load(source, environment: [:], workers: 2)
        #expect(serial.diagnostics.suppressed > 0)
        #expect(parallel.diagnostics.suppressed == serial.diagnostics.suppressed)
        #expect(parallel.diagnostics.rendered == serial.diagnostics.rendered)
        #expect(parallel.diagnostics.warnings.count == 1)
    }

    @Test("a list too short to split is read on the calling thread, with the same result")
    func shortList() {
        let text = minimalFile(
            """
            consumers:
              - username: alice
                keyauth_credentials: [{key: one}]
              - username: alice
            """)
        let source = [ConfigSource(name: "config.yaml", text: text)]
        let serial = ConfigLoader.load(source, environment: [:], workers: 1)
        let parallel = ConfigLoader.load(source, environment: [:], workers: 4)
        #expect(parallel.state == serial.state)
        #expect(parallel.diagnostics.rendered == serial.diagnostics.rendered)
        #expect(parallel.diagnostics.rendered.contains { $0.contains("consumer \"alice\" is defined more than once") })
    }
}
