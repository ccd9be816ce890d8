import DataPlane
import Foundation
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import TestSupport
import Testing

/// The hot path, in process: budget-proxyd's `ProxyDaemon` against a real emulator and budget-controld.
@Suite("budget-proxyd's request path", .serialized)
struct ProxyPathTests {
    static let hello = #"{"messages":[{"role":"user","content":"Hello"}]}"#

    @Test("each tier is answered with Bedrock's usage, and exactly that usage is charged")
    func tiersAreChargedWhatBedrockReported() async throws {
        try await GatewayUnderTest.withGateway { gateway in
            for (key, consumer, limit) in [
                ("dev-team-key", "signify-dev-team", 10_000), ("analytics-key", "signify-analytics", 50_000),
                ("production-key", "signify-production", 200_000),
            ] {
                let reply = try await gateway.chat(Self.hello, key: key)
                #expect(reply.status == 200, "\(reply.body)")
                let tokens = try #require(reply.totalTokens)
                #expect(tokens > 0)
                #expect(reply.headers.first(name: "X-AI-RateLimit-Limit-day-bedrock") == String(limit))
                #expect(reply.headers.first(name: "X-AI-RateLimit-Remaining-day-bedrock") == String(limit - tokens))
                // The first charge of the day comes back a day later, not now.
                let reset = try #require(Int(reply.headers.first(name: "X-AI-RateLimit-Reset-day-bedrock") ?? ""))
                #expect(reset > Int(Date().timeIntervalSince1970) + 86_000)
                let usage = try await gateway.usage(of: consumer) { $0.used == Double(tokens) && $0.inFlight == 0 }
                #expect(usage.used == Double(tokens))
                #expect(usage.inFlight == 0)
            }
        }
    }

    @Test("key-auth, routes and bodies are refused with Kong's statuses and messages")
    func refusalsBeforeTheBudget() async throws {
        try await GatewayUnderTest.withGateway { gateway in
            let noKey = try await gateway.chat(Self.hello, key: nil)
            #expect(noKey.status == 401)
            #expect(noKey.json?["message"] as? String == "No API key found in request")
            let unknown = try await gateway.chat(Self.hello, key: "not-a-key")
            #expect(unknown.status == 401)
            #expect(unknown.json?["message"] as? String == "Unauthorized")
            let noRoute = try await gateway.chat(Self.hello, key: "dev-team-key", path: "/elsewhere")
            #expect(noRoute.status == 404)
            let notJSON = try await gateway.chat("{not json", key: "dev-team-key")
            #expect(notJSON.status == 400)
            #expect(notJSON.body.contains("request body is not valid JSON"))
            let otherModel = try await gateway.chat(
                #"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#, key: "dev-team-key")
            #expect(otherModel.status == 400)
            #expect(otherModel.body.contains("cannot use own model"))
            // Nothing above reached the budget.
            #expect(try await gateway.usage(of: "signify-dev-team") == (used: 0, inFlight: 0))
        }
    }

    @Test("with key_in_body the key is read from the body, and the chat request is served without it")
    func keyInBody() async throws {
        let config = fixtureText().replacingOccurrences(of: "key_in_body: false", with: "key_in_body: true")
        try await GatewayUnderTest.withGateway(config: config) { gateway in
            let reply = try await gateway.chat(
                #"{"apikey":"dev-team-key","messages":[{"role":"user","content":"Hello"}]}"#, key: nil)
            #expect(reply.status == 200, "\(reply.body)")
            let tokens = try #require(reply.totalTokens)
            #expect(try await gateway.usage(of: "signify-dev-team") { $0.used == Double(tokens) }.used == Double(tokens))
            let wrong = try await gateway.chat(
                #"{"apikey":"nobody","messages":[{"role":"user","content":"Hello"}]}"#, key: nil)
            #expect(wrong.status == 401)
        }
    }

    @Test("a spent budget is refused with 429, Retry-After and the configured message")
    func spentBudgetIsRefused() async throws {
        let config = fixtureText().replacingOccurrences(of: "limit: [10000]", with: "limit: [30]")
        try await GatewayUnderTest.withGateway(config: config) { gateway in
            var refused: GatewayUnderTest.Reply?
            var admitted = 0
            for _ in 0..<20 {
                let reply = try await gateway.chat(Self.hello, key: "dev-team-key")
                if reply.status == 429 {
                    refused = reply
                    break
                }
                #expect(reply.status == 200, "\(reply.body)")
                admitted += 1
                // The next admission must see this request's charge.
                _ = try await gateway.usage(of: "signify-dev-team") { $0.inFlight == 0 }
            }
            let refusal = try #require(refused)
            #expect(admitted >= 1)
            #expect(refusal.json?["message"] as? String == "API rate limit exceeded")
            #expect(Int(refusal.headers.first(name: "Retry-After") ?? "") ?? 0 > 0)
            #expect(refusal.headers.first(name: "X-AI-RateLimit-Remaining-day-bedrock") == "0")
            // The other tiers are untouched.
            #expect(try await gateway.chat(Self.hello, key: "analytics-key").status == 200)
        }
    }

    @Test("an upstream error answers Bedrock's status, charges nothing and releases the hold")
    func upstreamErrorReleasesTheHold() async throws {
        try await GatewayUnderTest.withGateway { gateway in
            let throttled = try await gateway.chat(
                #"{"messages":[{"role":"user","content":"[[emulator-fault:throttle]] Hello"}]}"#, key: "dev-team-key")
            #expect(throttled.status == 429, "\(throttled.body)")
            #expect((throttled.json?["error"] as? [String: Any])?["message"] != nil)
            let usage = try await gateway.usage(of: "signify-dev-team") { $0.inFlight == 0 }
            #expect(usage.used == 0)
            #expect(usage.inFlight == 0)
        }
    }

    @Test("a Bedrock that drops the connection after the request: 502, and the prompt estimate is charged")
    func droppedAfterSendChargesThePrompt() async throws {
        try await GatewayUnderTest.withGateway { gateway in
            let dropped = try await gateway.chat(
                #"{"messages":[{"role":"user","content":"[[emulator-fault:drop]] Hello"}]}"#, key: "dev-team-key")
            #expect(dropped.status == 502, "\(dropped.body)")
            // Bedrock may have run it: the prompt (about 10 tokens by the proxy's estimate) is charged, no more.
            let usage = try await gateway.usage(of: "signify-dev-team") { $0.used > 0 && $0.inFlight == 0 }
            #expect(usage.used > 0 && usage.used < 30, "charged \(usage.used)")
            #expect(usage.inFlight == 0)
        }
    }

    @Test("an unreachable Bedrock is a 502 with a plain message; the detail stays in the log; nothing is held")
    func unreachableUpstream() async throws {
        // A port nothing listens on (discard's, unused on loopback here).
        let config = fixtureText().replacingOccurrences(
            of: "                  bedrock:\n",
            with: "                  upstream_url: http://127.0.0.1:9\n                  bedrock:\n")
        try await GatewayUnderTest.withGateway(config: config) { gateway in
            let reply = try await gateway.chat(Self.hello, key: "dev-team-key")
            #expect(reply.status == 502, "\(reply.body)")
            let message = try #require((reply.json?["error"] as? [String: Any])?["message"] as? String)
            #expect(message == "cannot reach Bedrock at http://127.0.0.1:9; the gateway's log has the reason")
            let usage = try await gateway.usage(of: "signify-dev-team") { $0.inFlight == 0 }
            #expect(usage.used == 0 && usage.inFlight == 0)
        }
    }

    @Test("a streamed answer arrives as server-sent events and its reported usage is charged")
    func streamingChargesReportedUsage() async throws {
        try await GatewayUnderTest.withGateway { gateway in
            let reply = try await gateway.chat(
                #"{"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}"#,
                key: "analytics-key")
            #expect(reply.status == 200)
            #expect(reply.headers.first(name: "Content-Type") == "text/event-stream")
            let events = reply.body.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: ") }
            #expect(events.last == "data: [DONE]")
            let usageEvent = try #require(events.dropLast().last)
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(usageEvent.dropFirst(6).utf8)) as? [String: Any])
            let total = try #require((object["usage"] as? [String: Any])?["total_tokens"] as? Int)
            let usage = try await gateway.usage(of: "signify-analytics") { $0.used == Double(total) }
            #expect(usage.used == Double(total))
            #expect(usage.inFlight == 0)
        }
    }

    @Test("a graceful shutdown lets the request in flight finish and charge")
    func gracefulShutdownDrainsRequestsInFlight() async throws {
        try await GatewayUnderTest.withGateway { gateway in
            async let slow = gateway.chat(
                #"{"messages":[{"role":"user","content":"[[emulator-fault:latency-1500]] Hello"}]}"#,
                key: "production-key")
            try await Task.sleep(for: .milliseconds(500))
            await gateway.services.triggerGracefulShutdown()
            let reply = try await slow
            #expect(reply.status == 200, "\(reply.body)")
            try await gateway.running.value
            // The daemon has stopped: the listener is closed, and the usage reached the control plane first.
            await #expect(throws: (any Error).self) {
                _ = try await gateway.chat(Self.hello, key: "production-key", timeout: .seconds(1))
            }
            let tokens = try #require(reply.totalTokens)
            #expect(try await gateway.usage(of: "signify-production").used == Double(tokens))
        }
    }
}

/// What the proxy keeps for the control plane while it is away.
@Suite("budget-proxyd's pending usage", .serialized)
struct PendingUsageTests {
    @Test("usage queued through a control-plane outage, more than one frame holds, is all charged after it")
    func outageBacklogIsDelivered() async throws {
        // Every tier with three windows, as in the outage that wedged: 4,096 three-window commits overflow a frame.
        let config = fixtureText()
            .replacingOccurrences(of: #"limit: \[\d+\]"#, with: "limit: [1000000000, 1000000000, 1000000000]",
                options: .regularExpression)
            .replacingOccurrences(of: "window_size: [86400]", with: "window_size: [60, 3600, 86400]")
        try await GatewayUnderTest.withGateway(config: config, lossPolicy: .failOpen) { gateway in
            await gateway.killControlPlane()
            let requests = 4_500
            let tokens = try await withThrowingTaskGroup(of: Int.self) { group in
                var sent = 0
                var total = 0
                for _ in 0..<32 {
                    sent += 1
                    group.addTask { try await Self.proxiedTokens(gateway) }
                }
                while let tokens = try await group.next() {
                    total += tokens
                    if sent < requests {
                        sent += 1
                        group.addTask { try await Self.proxiedTokens(gateway) }
                    }
                }
                return total
            }
            try await gateway.restartControlPlane()
            let usage = try await gateway.usage(of: "signify-production") { $0.used == Double(tokens) }
            #expect(usage.used == Double(tokens), "charged \(usage.used) of \(tokens) tokens Bedrock reported")
        }
    }

    /// One request with production-key answered 200 (fail-open while the control plane is away): its tokens.
    static func proxiedTokens(_ gateway: GatewayUnderTest) async throws -> Int {
        let reply = try await gateway.chat(ProxyPathTests.hello, key: "production-key")
        guard reply.status == 200, let tokens = reply.totalTokens else {
            throw TestFailure("expected a proxied 200, got \(reply.status): \(reply.body)")
        }
        return tokens
    }
}

/// A hard budget through a control-plane restart and through a request longer than a hold's lifetime: the
/// holds of requests in flight are leases the proxy renews and re-establishes.
@Suite("Hard budgets through faults", .serialized)
struct HardBudgetFaultTests {
    /// The fixture with the basic tier (dev-team-key) in hard mode at 8,000 tokens a day.
    static let config = fixtureText()
        .replacingOccurrences(of: "limit: [10000]", with: "limit: [8000]")
        .replacingOccurrences(
            of: "strategy: local              # no sync_rate with local",
            with: "strategy: local\n      enforcement: hard")

    /// A 4,000-token essay, delayed by the emulator.
    static func essay(latencyMs: Int = 0) -> String {
        let fault = latencyMs > 0 ? "[[emulator-fault:latency-\(latencyMs)]] " : ""
        return #"{"max_tokens":4000,"messages":[{"role":"user","content":"\#(fault)Write a 4000 word essay"}]}"#
    }

    /// Sends `body` until the proxy stops answering 503 (it is reconnecting to the control plane), for 15 s.
    static func sendWhenConnected(_ gateway: GatewayUnderTest, _ body: String) async throws
        -> GatewayUnderTest.Reply
    {
        let deadline = ContinuousClock.now + .seconds(15)
        while true {
            let reply = try await gateway.chat(body, key: "dev-team-key")
            if reply.status != 503 || ContinuousClock.now > deadline { return reply }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test("kill -9 of budget-controld with a request in flight: an 8,000-token hard budget stays at most 8,000")
    func hardAcrossControlPlaneRestart() async throws {
        try await GatewayUnderTest.withGateway(config: Self.config) { gateway in
            async let first = gateway.chat(Self.essay(latencyMs: 3000), key: "dev-team-key")
            try await Task.sleep(for: .milliseconds(700))
            await gateway.killControlPlane()
            try await gateway.restartControlPlane()
            let second = try await Self.sendWhenConnected(gateway, Self.essay())
            let third = try await gateway.chat(Self.essay(), key: "dev-team-key")
            let answers = [try await first, second, third]
            #expect(answers[0].status == 200, "\(answers[0].body)")
            #expect(answers[1].status == 200, "\(answers[1].body)")
            let usage = try await gateway.usage(of: "signify-dev-team") { $0.inFlight == 0 }
            let reported = answers.compactMap(\.totalTokens).reduce(0, +)
            #expect(usage.used <= 8000, "charged \(usage.used); statuses \(answers.map(\.status))")
            #expect(usage.used == Double(reported), "charged \(usage.used), Bedrock reported \(reported)")
        }
    }

    @Test("a request longer than --reservation-ttl keeps its hold: the budget stays at most 8,000")
    func leaseOutlivesTTL() async throws {
        try await GatewayUnderTest.withGateway(
            config: Self.config, controlPlaneArguments: ["--reservation-ttl", "10"]
        ) { gateway in
            async let first = gateway.chat(Self.essay(latencyMs: 16_000), key: "dev-team-key")
            try await Task.sleep(for: .seconds(12))
            let second = try await gateway.chat(Self.essay(), key: "dev-team-key")
            let third = try await gateway.chat(Self.essay(), key: "dev-team-key")
            let answers = [try await first, second, third]
            #expect(answers[0].status == 200, "\(answers[0].body)")
            let usage = try await gateway.usage(of: "signify-dev-team") { $0.inFlight == 0 }
            let reported = answers.compactMap(\.totalTokens).reduce(0, +)
            #expect(usage.used <= 8000, "charged \(usage.used); statuses \(answers.map(\.status))")
            #expect(usage.used == Double(reported), "charged \(usage.used), Bedrock reported \(reported)")
        }
    }
}
