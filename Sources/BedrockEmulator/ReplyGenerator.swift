import Bedrock

/// The emulator's deterministic model: the same prompt always gets the same reply, and the reply's
/// length follows what was asked ("Hello" gets a greeting; "Write a 2000 word essay" gets about
/// 2,700 tokens, cut at `maxTokens` with `stopReason: max_tokens`).
///
/// Token counts use the gateway's own estimate (one token per four UTF-8 bytes), so tests can predict them.
struct ReplyGenerator {
    struct Reply {
        var text: String
        var outputTokens: Int
        var stopReason: String
    }

    /// `prompt` is the last user text; `maxTokens` the request's limit.
    static func reply(to prompt: String, maxTokens: Int) -> Reply {
        let target = targetTokens(for: prompt)
        let tokens = min(target, maxTokens)
        let text = text(tokens: tokens, seed: fnv1a(prompt), greeting: isGreeting(prompt))
        return Reply(text: text, outputTokens: tokens, stopReason: target > maxTokens ? "max_tokens" : "end_turn")
    }

    static func targetTokens(for prompt: String) -> Int {
        if let words = requestedWords(prompt) { return max(1, words * 4 / 3) }
        if isGreeting(prompt) { return 8 }
        return 16 + Int(fnv1a(prompt) % 48)
    }

    /// "2000 word", "2000-word", "2,000 words" → 2000.
    static func requestedWords(_ prompt: String) -> Int? {
        let words = prompt.lowercased().split(whereSeparator: { $0 == " " || $0 == "-" || $0 == "\n" })
        for (index, word) in words.enumerated() where index + 1 < words.count && words[index + 1].hasPrefix("word") {
            if let count = Int(word.filter { $0 != "," }), count > 0 { return min(count, 100_000) }
        }
        return nil
    }

    static func isGreeting(_ prompt: String) -> Bool {
        let trimmed = prompt.lowercased().filter { $0.isLetter || $0 == " " }.split(separator: " ")
        return trimmed.count <= 3 && trimmed.contains { ["hello", "hi", "hey"].contains($0) }
    }

    static let vocabulary = [
        "renewable", "energy", "grids", "store", "power", "from", "wind", "and", "sunlight", "while", "batteries",
        "balance", "demand", "across", "the", "day", "cities", "invest", "in", "cleaner", "transport", "which",
        "lowers", "costs", "over", "time", "engineers", "measure", "every", "watt", "carefully", "so", "that",
        "homes", "stay", "warm", "a", "stable", "future", "depends", "on", "steady", "planning",
    ]

    /// Text of exactly `tokens` estimated tokens (`ceil(bytes / 4)`), built from whole words.
    static func text(tokens: Int, seed: UInt64, greeting: Bool) -> String {
        guard tokens > 0 else { return "" }
        let targetBytes = tokens * 4
        var text = greeting ? "Hello! How can I help you today?" : ""
        var state = seed | 1
        while text.utf8.count < targetBytes - 3 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let word = vocabulary[Int((state >> 33) % UInt64(vocabulary.count))]
            var piece = text.isEmpty ? word.prefix(1).uppercased() + word.dropFirst() : " " + word
            let room = targetBytes - text.utf8.count
            if piece.utf8.count > room {
                // End on the longest word that fits, else on a full stop.
                let fitting = vocabulary.filter { $0.utf8.count + 1 <= room }.max { $0.utf8.count < $1.utf8.count }
                piece = fitting.map { " " + $0 } ?? "."
            }
            text += piece
        }
        while text.utf8.count > targetBytes { text.removeLast() }
        return text
    }

    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// The text split into the deltas a stream sends: a few words each.
    static func deltas(of text: String, wordsPerDelta: Int = 4) -> [String] {
        var pieces: [String] = []
        var current = ""
        var words = 0
        for character in text {
            current.append(character)
            if character == " " {
                words += 1
                if words == wordsPerDelta {
                    pieces.append(current)
                    current = ""
                    words = 0
                }
            }
        }
        if !current.isEmpty { pieces.append(current) }
        return pieces
    }
}
