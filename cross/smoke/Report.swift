/// The smoke program's output: one result per line, `key kind values`, in a fixed order.
///
/// Kinds:
/// - `info`: shown, never compared (the kernel name, which differs by CPU on purpose);
/// - `text`: compared exactly;
/// - `int`: comma-separated decimal integers, compared exactly (kernel dots, top-K indices, ...);
/// - `derived`: integers computed from float results (privatized grid values, the noise
///   variance from the grid's sensitivity): exact while every float before them is
///   bit-identical, else each within ±1 (see `Comparison`);
/// - `f32` / `f64`: comma-separated IEEE-754 bit patterns in hex (exact, locale- and
///   formatting-free), compared within `Tolerance`. A scalar float also gets its decimal form
///   after ` # ` for people reading the output.
struct Report {
    private(set) var lines: [String] = []

    mutating func info(_ key: String, _ value: String) { lines.append("\(key) info \(value)") }

    mutating func text(_ key: String, _ value: String) { lines.append("\(key) text \(value)") }

    mutating func int(_ key: String, _ value: Int) { integers(key, [Int64(value)]) }

    mutating func integers(_ key: String, _ values: [Int64], kind: String = "int") {
        var line = "\(key) \(kind) "
        for (position, value) in values.enumerated() {
            if position > 0 { line += "," }
            line += "\(value)"
        }
        lines.append(line)
    }

    mutating func derived(_ key: String, _ values: [Int64]) { integers(key, values, kind: "derived") }

    mutating func float32(_ key: String, _ values: [Float]) {
        var line = "\(key) f32 "
        for (position, value) in values.enumerated() {
            if position > 0 { line += "," }
            line += hex(UInt64(value.bitPattern), digits: 8)
        }
        if values.count == 1 { line += " # \(values[0])" }
        lines.append(line)
    }

    mutating func float64(_ key: String, _ values: [Double]) {
        var line = "\(key) f64 "
        for (position, value) in values.enumerated() {
            if position > 0 { line += "," }
            line += hex(value.bitPattern, digits: 16)
        }
        if values.count == 1 { line += " # \(values[0])" }
        lines.append(line)
    }

    /// `0x` and `value` in lower-case hex, zero-padded to `digits`.
    private func hex(_ value: UInt64, digits: Int) -> String {
        let body = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, digits - body.count)) + body
    }
}

/// FNV-1a (64-bit) over little-endian bytes: a compact digest of long integer results that is
/// printed next to (not instead of) the values.
struct FNV1a {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func add<T: FixedWidthInteger>(_ integer: T) {
        var v = integer
        for _ in 0 ..< T.bitWidth / 8 {
            value ^= UInt64(UInt8(truncatingIfNeeded: v))
            value = value &* 0x0000_0100_0000_01B3
            v >>= 8
        }
    }
}
