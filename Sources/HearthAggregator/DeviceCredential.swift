import Crypto
import HearthCore

/// A device's bearer credential: `hrth_` + 64 hex digits (32 bytes from the system's secure
/// generator). The aggregator keeps only its SHA-256; `devices add` prints it once.
public enum DeviceCredential {
    /// The prefix of every credential (so a leaked one is easy to recognise in logs and scans).
    public static let prefix = "hrth_"

    /// A fresh credential.
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for _ in 0 ..< 4 {
            let word = rng.next()
            for j in 0 ..< 8 { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(8 * j))) }
        }
        return prefix + hex(bytes)
    }

    /// SHA-256 of the credential's UTF-8 bytes: what the store keeps and looks up.
    public static func hash(_ credential: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(credential.utf8)))
    }

    /// The credential in an `Authorization: Bearer ...` header value, nil if the header is not one.
    public static func bearer(_ header: String?) -> String? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = String(parts[1]).trimmingSpaces()
        guard !token.isEmpty, token.utf8.count <= 256 else { return nil }
        return token
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}

/// The Ed25519 key that signs published models (swift-crypto's `Curve25519.Signing`).
///
/// Stored as the base64 of the 32-byte raw private key in a file readable by the aggregator
/// only (mode 0600); agents are configured with the base64 of the public half.
public struct ModelSigner: Sendable {
    private let key: Curve25519.Signing.PrivateKey

    /// A fresh key.
    public init() { key = Curve25519.Signing.PrivateKey() }

    /// The key in a key file's text (base64 of 32 raw bytes).
    public init(keyFileText: String) throws(AggregatorError) {
        guard let raw = Base64.decode(keyFileText.trimmingNewlines()), raw.count == 32,
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
            throw .configuration("the signing key file is not the base64 of a 32-byte Ed25519 key")
        }
        self.key = key
    }

    /// What `init` writes to the key file.
    public var keyFileText: String { Base64.encode(Array(key.rawRepresentation)) + "\n" }

    /// Base64 of the 32-byte public key: the agents' `upload.model_public_key`.
    public var publicKeyBase64: String { Base64.encode(Array(key.publicKey.rawRepresentation)) }

    /// The 64-byte signature of `bytes`.
    public func sign(_ bytes: [UInt8]) throws(AggregatorError) -> [UInt8] {
        do {
            return Array(try key.signature(for: bytes))
        } catch {
            throw .internalFailure("signing failed: \(error)")
        }
    }
}

extension String {
    fileprivate func trimmingNewlines() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == "\r" || last == " " { s = s.dropLast() }
        return String(s)
    }
}
