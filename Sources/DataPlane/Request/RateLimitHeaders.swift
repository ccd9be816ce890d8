import BudgetConfig
import BudgetLedger
import Foundation
import Synchronization

/// `X-AI-RateLimit-*` headers, as Kong names them.
enum RateLimitHeaders {
    /// Kong's window name, or the number of seconds for other sizes.
    static func windowName(_ seconds: Int) -> String { WindowName.named(seconds) ?? String(seconds) }

    static func number(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 9e15 ? String(Int(value)) : String(format: "%.14g", value)
    }

    /// Limit, Remaining and Reset per window (Remaining after `charged` units of this request), unless the
    /// budget hides client headers (or there is none). Remaining is floored to whole tokens, as Kong does, but
    /// not with the `cost` strategy, whose units are dollars.
    static func headers(_ windows: [WindowStatus], charged: Double = 0, for budget: BudgetPolicy.Budget?)
        -> [(String, String)]
    {
        var headers: [(String, String)] = []
        append(windows, charged: charged, for: budget, to: &headers)
        return headers
    }

    /// `headers(…)` appended to `headers`, for an answer that builds its header list in one array.
    static func append(
        _ windows: [WindowStatus], charged: Double = 0, for budget: BudgetPolicy.Budget?,
        to headers: inout [(String, String)]
    ) {
        guard let budget, !budget.config.hideClientHeaders else { return }
        let floored = budget.config.tokensCountStrategy != .cost
        headers.reserveCapacity(headers.count + windows.count * 3)
        for window in windows {
            let names = HeaderNames.shared.names(windowSize: window.key.windowSize, provider: window.key.provider)
            let remaining = max(0, window.remaining - charged)
            headers.append((names.limit, number(window.limit)))
            headers.append((names.remaining, number(floored ? floor(remaining) : remaining)))
            headers.append((names.reset, String(window.reset)))
        }
    }

    /// The three header names of a window and provider, made once: every answer with a budget carries them.
    /// Bounded (256 entries; cleared when full), since providers and window sizes come from the config.
    final class HeaderNames: Sendable {
        static let shared = HeaderNames()
        static let capacity = 256

        struct Names: Sendable {
            var limit: String
            var remaining: String
            var reset: String
        }

        private struct Key: Hashable, Sendable {
            var windowSize: Int
            var provider: String
        }

        private let known = Mutex<[Key: Names]>([:])

        func names(windowSize: Int, provider: String) -> Names {
            let key = Key(windowSize: windowSize, provider: provider)
            if let names = known.withLock({ $0[key] }) { return names }
            let suffix = "\(windowName(windowSize))-\(provider)"
            let names = Names(
                limit: "X-AI-RateLimit-Limit-\(suffix)", remaining: "X-AI-RateLimit-Remaining-\(suffix)",
                reset: "X-AI-RateLimit-Reset-\(suffix)")
            known.withLock { known in
                if known.count >= Self.capacity { known.removeAll() }
                known[key] = names
            }
            return names
        }
    }

    /// `Retry-After` (always, as HTTP defines it) and the per-window retry headers of the exceeded windows.
    static func retryAfter(_ windows: [WindowStatus], exceeded: [LimitKey], seconds: Int, hidden: Bool) -> [(
        String, String
    )] {
        var headers = [("Retry-After", String(seconds))]
        guard !hidden else { return headers }
        for window in windows where exceeded.contains(window.key) {
            headers.append(
                (
                    "X-AI-RateLimit-Retry-After-\(windowName(window.key.windowSize))-\(window.key.provider)",
                    String(seconds)
                ))
        }
        return headers
    }
}
