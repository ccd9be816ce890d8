import BudgetConfig
import BudgetLedger
import Foundation

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
        guard let budget, !budget.config.hideClientHeaders else { return [] }
        let floored = budget.config.tokensCountStrategy != .cost
        return windows.flatMap { window -> [(String, String)] in
            let suffix = "\(windowName(window.key.windowSize))-\(window.key.provider)"
            let remaining = max(0, window.remaining - charged)
            return [
                ("X-AI-RateLimit-Limit-\(suffix)", number(window.limit)),
                ("X-AI-RateLimit-Remaining-\(suffix)", number(floored ? floor(remaining) : remaining)),
                ("X-AI-RateLimit-Reset-\(suffix)", String(window.reset)),
            ]
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
