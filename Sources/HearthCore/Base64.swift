/// Strict standard base64 (RFC 4648 §4), padding optional, no whitespace inside.
public enum Base64 {
    /// The bytes of standard base64 text (padding optional, surrounding spaces/tabs allowed); nil when malformed or non-canonical.
    public static func decode(_ text: String) -> [UInt8]? {
        var input = Array(text.utf8)
        while let last = input.last, last == 0x20 || last == 0x09 { input.removeLast() }
        while let first = input.first, first == 0x20 || first == 0x09 { input.removeFirst() }
        while let last = input.last, last == 0x3D { input.removeLast() }
        guard input.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(input.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in input {
            let v: UInt32
            switch c {
            case 0x41 ... 0x5A: v = UInt32(c - 0x41)
            case 0x61 ... 0x7A: v = UInt32(c - 0x61 + 26)
            case 0x30 ... 0x39: v = UInt32(c - 0x30 + 52)
            case 0x2B: v = 62
            case 0x2F: v = 63
            default: return nil
            }
            acc = acc << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
            acc &= (1 << UInt32(bits)) - 1
        }
        guard acc == 0 else { return nil }  // non-canonical trailing bits
        return out
    }

    /// Standard base64 with padding.
    public static func encode(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let triple = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(triple >> 18 & 63)])
            out.append(alphabet[Int(triple >> 12 & 63)])
            out.append(i + 1 < bytes.count ? alphabet[Int(triple >> 6 & 63)] : 0x3D)
            out.append(i + 2 < bytes.count ? alphabet[Int(triple & 63)] : 0x3D)
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
