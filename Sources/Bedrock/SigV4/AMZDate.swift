/// A UTC instant in SigV4's `YYYYMMDD'T'HHMMSS'Z'` form, converted without Foundation's formatters.
public struct AMZDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Seconds since the Unix epoch.
    public var epochSeconds: Int64

    public init(epochSeconds: Int64) { self.epochSeconds = epochSeconds }

    /// Parses `20240101T000000Z`; nil for any other form or an impossible date.
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count == 16, bytes[8] == UInt8(ascii: "T"), bytes[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in bytes[range] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
            let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        let days = Self.daysFromCivil(year: year, month: month, day: day)
        epochSeconds = Int64(days) * 86400 + Int64(hour * 3600 + minute * 60 + second)
    }

    /// `YYYYMMDDTHHMMSSZ`.
    public var description: String {
        let days = Int(floorDiv(epochSeconds, 86400))
        let secondsOfDay = Int(epochSeconds - Int64(days) * 86400)
        let (year, month, day) = Self.civilFromDays(days)
        // Written digit by digit into the string's own storage: this runs several times for every signature.
        return String(unsafeUninitializedCapacity: 16) { buffer in
            func put(_ value: Int, _ width: Int, at offset: Int) {
                var value = value
                for index in stride(from: offset + width - 1, through: offset, by: -1) {
                    buffer[index] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
            }
            put(min(max(year, 0), 9999), 4, at: 0)
            put(month, 2, at: 4)
            put(day, 2, at: 6)
            buffer[8] = UInt8(ascii: "T")
            put(secondsOfDay / 3600, 2, at: 9)
            put(secondsOfDay / 60 % 60, 2, at: 11)
            put(secondsOfDay % 60, 2, at: 13)
            buffer[15] = UInt8(ascii: "Z")
            return 16
        }
    }

    /// `YYYYMMDD`, the date of the credential scope.
    public var dateStamp: String { String(description.prefix(8)) }

    public static func < (lhs: AMZDate, rhs: AMZDate) -> Bool { lhs.epochSeconds < rhs.epochSeconds }

    // Howard Hinnant's days-from-civil algorithms (public domain).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146097 + dayOfEra - 719468
    }

    static func civilFromDays(_ days: Int) -> (Int, Int, Int) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let dayOfEra = z - era * 146097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

private func floorDiv(_ value: Int64, _ divisor: Int64) -> Int64 {
    value >= 0 ? value / divisor : (value - divisor + 1) / divisor
}
