import HearthCore
@testable import HearthPrivacy
@testable import HearthAggregation

/// The aggregator's reading of an upload: `UpdateEnvelope.decode`, the streaming reader
/// (`readHeader`, `decodeHeader`, `PackedValues`) and `UpdateValidator.validate`, plus the
/// `Idempotency-Key` header's hex.
///
/// Each input is read as given and "resealed" (dimension fitted to the length, CRC recomputed)
/// so mutants reach the checks behind the checksum. The validator runs against a fixed plan
/// (the aggregation tests' fixture) and against a plan built from the upload's own header with
/// the grid scale patched in, so arbitrary modes, units, bit widths, clip norms and noise reach
/// the value and norm checks. Properties, beyond not crashing:
/// - `decode` accepts exactly what `decodeHeader` plus the streamed values accept, the streamed
///   values are `decode`'s, and `encode(decode(x)) == x` (the format is canonical);
/// - whatever the validator accepts decodes, matches its plan, and its reported ‖v‖₂² is the
///   exact sum of squares of the decoded values, within the reported bound.
enum FuzzTarget {
    /// The aggregation tests' fixture plan: central, device unit, 12 bits, version 10.
    static let fixedPlan = FederationPlan(modelVersion: 10, samplingRate: 0.01, clipNorm: 1, noiseMultiplier: 1,
                                          mode: .central, unit: .device, maxSessionsPerUpdate: 3, bitWidth: 12,
                                          headroom: 4, maxStaleness: 2)
    /// 3 items × 2 + 3 biases.
    static let fixedDimension = 9

    static func run(_ bytes: [UInt8]) {
        check(bytes)
        let resealed = reseal(bytes)
        if resealed != bytes { check(resealed) }
        checkIdempotencyKeyText(bytes)
    }

    static func check(_ bytes: [UInt8]) {
        checkDecoders(bytes)
        validate(bytes, plan: fixedPlan, currentVersion: fixedPlan.modelVersion, dimension: fixedDimension)
        if let (plan, patched) = ownPlan(bytes) {
            validate(patched, plan: plan, currentVersion: plan.modelVersion, dimension: Int(getLE(patched, at: 24, width: 4)))
        }
    }

    /// `decode` and the streaming reader agree on acceptance and values.
    static func checkDecoders(_ bytes: [UInt8]) {
        let decoded = try? UpdateEnvelope.decode(bytes)
        let header = try? UpdateEnvelope.decodeHeader(bytes)
        if decoded != nil { require(header != nil, "decode accepts what decodeHeader refuses") }
        guard let header else { return }
        guard var reader = try? UpdateEnvelope.PackedValues(bytes, header: header) else {
            fatalError("property violated: PackedValues refuses what decodeHeader accepts")
        }
        var values: [Int64] = []
        var inRange = true
        while let v = reader.next() {
            if v < -reader.limit { inRange = false }
            values.append(v)
        }
        require(values.count == header.dimension, "PackedValues gave \(values.count) values for dimension \(header.dimension)")
        let streamedAccepts = inRange && reader.paddingIsZero
        require(streamedAccepts == (decoded != nil), "decode and the streaming reader disagree on acceptance")
        guard let decoded else { return }
        require(decoded.values == values, "decode and PackedValues give different values")
        require(decoded.modelVersion == header.modelVersion && decoded.bitWidth == header.bitWidth
                    && decoded.idempotencyKey == header.idempotencyKey, "decode and decodeHeader give different fields")
        let encoded = try? decoded.encode()
        require(encoded == bytes, "encode(decode(x)) != x")
    }

    /// Runs the validator; an accepted upload must decode, fit the plan and have the reported norm.
    static func validate(_ bytes: [UInt8], plan: FederationPlan, currentVersion: UInt64, dimension: Int) {
        guard let accepted = try? UpdateValidator.validate(bytes, plan: plan, currentVersion: currentVersion, dimension: dimension) else {
            return
        }
        guard let decoded = try? UpdateEnvelope.decode(bytes) else {
            fatalError("property violated: the validator accepts an upload decode refuses")
        }
        require(decoded.dimension == dimension && decoded.mode == plan.mode && decoded.unit == plan.unit
                    && decoded.bitWidth == plan.bitWidth && decoded.clipNorm == plan.clipNorm,
                "the validator accepts an upload that does not match its plan")
        require(decoded.modelVersion <= currentVersion && currentVersion - decoded.modelVersion <= UInt64(plan.maxStaleness),
                "the validator accepts a model version outside the staleness window")
        var exact = SquaredNorm()
        for v in decoded.values { exact.add(v) }
        require(exact.doubleValue == accepted.squaredNorm, "reported ‖v‖₂² \(accepted.squaredNorm) != exact \(exact.doubleValue)")
        let bound = accepted.normBound * accepted.normBound
        require(accepted.squaredNorm <= bound * (1 + 1e-12), "accepted ‖v‖₂² \(accepted.squaredNorm) above the bound² \(bound)")
    }

    /// A plan the upload's header asks for (mode, unit, bit width, C, z, q, contributions,
    /// version), and the upload with that plan's grid scale written in and the CRC redone.
    static func ownPlan(_ bytes: [UInt8]) -> (FederationPlan, [UInt8])? {
        guard let header = try? UpdateEnvelope.readHeader(bytes), header.mode == .local || header.mode == .central else {
            return nil
        }
        let z = header.noiseMultiplier.isFinite && header.noiseMultiplier > 0 ? header.noiseMultiplier : 1
        let plan = FederationPlan(modelVersion: header.modelVersion, samplingRate: header.samplingRate,
                                  clipNorm: header.clipNorm, noiseMultiplier: z, mode: header.mode, unit: header.unit,
                                  maxSessionsPerUpdate: max(1, min(header.contributions, 1 << 20)),
                                  bitWidth: header.bitWidth, headroom: 4, maxStaleness: 4)
        let deviceNoise = header.mode == .local ? header.noiseMultiplier : 0
        guard deviceNoise.isFinite, deviceNoise >= 0,
              let grid = try? plan.grid(dimension: header.dimension, deviceNoiseMultiplier: deviceNoise) else { return nil }
        var patched = bytes
        putLE(grid.scale.bitPattern, into: &patched, at: 56, width: 8)
        resealChecksum(&patched)
        return (plan, patched)
    }

    /// `bytes` with the dimension fitted to the length (when the bit width is valid and the
    /// declared dimension does not fit) and the CRC recomputed.
    static func reseal(_ bytes: [UInt8]) -> [UInt8] {
        let minimum = UpdateEnvelope.headerSize + UpdateEnvelope.checksumSize
        guard bytes.count >= minimum else { return bytes }
        var out = bytes
        let bitWidth = Int(out[12])
        let declared = Int(getLE(out, at: 24, width: 4))
        if bitWidth >= 4, bitWidth <= 32, UpdateEnvelope.encodedSize(dimension: declared, bitWidth: bitWidth) != out.count {
            let dimension = (out.count - minimum) * 8 / bitWidth
            if dimension > 0 { putLE(UInt64(dimension), into: &out, at: 24, width: 4) }
        }
        resealChecksum(&out)
        return out
    }

    /// Rewrites the last four bytes with the CRC-32 of the rest.
    static func resealChecksum(_ bytes: inout [UInt8]) {
        let crcOffset = bytes.count - UpdateEnvelope.checksumSize
        putLE(UInt64(UpdateEnvelope.crc32(bytes, count: crcOffset)), into: &bytes, at: crcOffset, width: 4)
    }

    /// The `Idempotency-Key` header: 32 hex digits, either case; what parses prints back as the
    /// same digits in lower case.
    static func checkIdempotencyKeyText(_ bytes: [UInt8]) {
        guard bytes.count == 2 * IdempotencyKey.byteCount, let key = try? IdempotencyKey(hex: String(decoding: bytes, as: UTF8.self)) else {
            return
        }
        let lower = bytes.map { $0 >= 0x41 && $0 <= 0x46 ? $0 + 0x20 : $0 }
        require(Array(key.hex.utf8) == lower, "IdempotencyKey(hex:).hex does not give the digits back")
    }

    /// Valid uploads from the real encoder and privatizer, in both modes and units, at 4, 12, 16
    /// and 32 bits, and a key header.
    static func seeds() -> [(String, [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        func key(_ seed: UInt64) -> IdempotencyKey {
            var rng = Xoshiro256(seed: seed &+ 1000)
            return IdempotencyKey(using: &rng)
        }
        func plan(_ mode: UpdateMode, _ unit: PrivacyUnit, bits: Int) -> FederationPlan {
            FederationPlan(modelVersion: 10, samplingRate: 0.01, clipNorm: 1, noiseMultiplier: 1, mode: mode, unit: unit,
                           maxSessionsPerUpdate: 3, bitWidth: bits, headroom: 4, maxStaleness: 2)
        }
        // Explicit small values on the fixed plan's grid (the validator's fixture accepts them).
        let small: [Int64] = [3, -2, 0, 1, 5, -4, 0, 2, -1]
        if let grid = try? fixedPlan.grid(dimension: small.count, deviceNoiseMultiplier: 0),
           let bytes = try? UpdateEnvelope(modelVersion: 10, mode: .central, unit: .device, contributions: 1,
                                           noiseMultiplier: 1, samplingRate: 0.01, clipNorm: 1, bitWidth: 12,
                                           scale: grid.scale, values: small, idempotencyKey: key(1)).encode() {
            seeds.append(("fixture-central-device-12.upd", bytes))
        }
        // Privatized uploads of random updates, as a compliant device makes them.
        let cases: [(UpdateMode, PrivacyUnit, Int, Int)] = [
            (.central, .device, 12, 9), (.central, .session, 16, 20), (.local, .device, 16, 9), (.local, .session, 20, 7),
            (.central, .device, 6, 9),
        ]
        for (index, (mode, unit, bits, dimension)) in cases.enumerated() {
            let plan = plan(mode, unit, bits: bits)
            let name = "privatized-\(mode.name)-\(unit.name)-\(bits).upd"
            var rng = Xoshiro256(seed: UInt64(index + 1))
            do throws(PrivacyError) {
                let privatizer = try UpdatePrivatizer(configuration: plan.privacyConfiguration, dimension: dimension)
                let update = (0 ..< dimension).map { _ in Double.random(in: -0.5 ... 0.5, using: &rng) }
                let privatized = try privatizer.privatize(update: update, using: &rng)
                let envelope = UpdateEnvelope(update: privatized, configuration: plan.privacyConfiguration, modelVersion: 10,
                                              samplingRate: plan.samplingRate, idempotencyKey: key(UInt64(index)))
                seeds.append((name, try envelope.encode()))
            } catch {
                print("no seed \(name): \(error.message)")
            }
        }
        seeds.append(("idempotency-key.txt", Array("0123456789abcdefFEDCBA9876543210".utf8)))
        return seeds
    }
}
