import HearthPrivacy

/// What validation learnt about an upload (no values materialised).
public struct ValidatedUpdate: Sendable, Hashable {
    /// Model version the update was trained from.
    public var modelVersion: UInt64
    /// Versions between the current one and `modelVersion` (0 = fresh).
    public var staleness: Int
    /// The envelope's idempotency key (the server deduplicates on it).
    public var idempotencyKey: IdempotencyKey
    /// Clipped units summed in the update (1 for the device unit).
    public var contributions: Int
    /// Number of coordinates.
    public var dimension: Int
    /// ‖v‖₂² in grid units (exact integer sum, converted to double).
    public var squaredNorm: Double
    /// The bound ‖v‖₂ was checked against, in grid units.
    public var normBound: Double
    /// Who added the noise.
    public var mode: UpdateMode
    /// The unit of privacy.
    public var unit: PrivacyUnit
    /// Bits per coordinate.
    public var bitWidth: Int
    /// The device's grid scale (grid steps per parameter unit).
    public var scale: Double
    /// The device's noise multiplier, as sent.
    public var noiseMultiplier: Double
    /// The device's sampling rate, as sent.
    public var samplingRate: Double
    /// The envelope's CRC-32 (lets `fold` check that it is given the same bytes).
    public var checksum: UInt32
}

/// Checks uploads against the plan before anything is stored or summed.
public enum UpdateValidator {
    /// Relative tolerance on the grid scale: the scale comes out of a floating-point bisection
    /// through `log`, which may differ by an ulp between the device's libm and the server's. The
    /// tolerance is a utility matter only: the privacy-relevant norm check is exact on the integers.
    public static let scaleTolerance = 1e-9

    /// The tail parameter t of the local-mode norm bound: an honest device's noise exceeds the
    /// bound with probability at most e^−t (see `localNormBound`).
    public static let localTailExponent = 40.0

    /// Full check of an upload's bytes: header, exact length, CRC, format version, mode, unit,
    /// bit width, clip norm, noise multiplier and scale consistent with the plan (the device's
    /// noise multiplier may not be below the plan's in local mode; in central mode the device
    /// adds none and z is informational), sampling rate not above the plan's, dimension equal
    /// to `dimension`, model version not newer than `currentVersion` and not older than
    /// `currentVersion − plan.maxStaleness`, every value in ±(2^(b−1) − 1), and the L2 norm bound:
    ///
    /// - central mode: ‖v‖₂² ≤ k²·⌊Δ²⌋ exactly in integers, with k the contributions and Δ the
    ///   plan grid's sensitivity as `IntegerGrid` defines it (each of k rounded contributions has
    ///   ‖r‖₂² ≤ ⌊Δ²⌋, so an honest sum passes deterministically);
    /// - local mode: ‖v‖₂ ≤ `localNormBound` = k·Δ + σ·(√d + √(2t)) with σ the device's noise
    ///   parameter and t = `localTailExponent`, which an honest upload exceeds with probability ≤ e^−t.
    ///
    /// The values are streamed from `bytes`; nothing proportional to d is allocated. Checks run
    /// in this order and the first failure is thrown: structure (`malformed_update`,
    /// `unsupported_format_version`, `checksum_mismatch`), model version (`unknown_model_version`,
    /// `stale_model_version`), plan (`plan_mismatch`, `dimension_mismatch`, `non_finite`), values
    /// (`value_out_of_range`, `malformed_update` for padding bits), norm (`norm_bound_exceeded`).
    public static func validate(_ bytes: [UInt8], plan: FederationPlan, currentVersion: UInt64, dimension: Int)
        throws(AggregationError) -> ValidatedUpdate
    {
        try plan.validate()
        let header: UpdateEnvelope.Header
        do {
            header = try UpdateEnvelope.readHeader(bytes)
        } catch {
            throw structuralError(error, bytes: bytes)
        }

        // Model version.
        if header.modelVersion > currentVersion {
            throw .unknownModelVersion("update trained from model version \(header.modelVersion), but the newest is \(currentVersion)")
        }
        let behind = currentVersion - header.modelVersion
        if behind > UInt64(plan.maxStaleness) {
            throw .staleModelVersion("update trained from model version \(header.modelVersion) is \(behind) versions behind \(currentVersion); at most \(plan.maxStaleness) accepted")
        }
        let staleness = Int(behind)

        // Plan.
        guard header.mode == plan.mode else {
            throw .planMismatch("mode is \(header.mode.name), the plan's is \(plan.mode.name)")
        }
        guard header.unit == plan.unit else {
            throw .planMismatch("privacy unit is \(header.unit.name), the plan's is \(plan.unit.name)")
        }
        guard header.bitWidth == plan.bitWidth else {
            throw .planMismatch("bit width is \(header.bitWidth), the plan's is \(plan.bitWidth)")
        }
        guard header.dimension == dimension else {
            throw .dimensionMismatch("update has \(header.dimension) values, the model has \(dimension) parameters")
        }
        guard header.clipNorm.isFinite else { throw .nonFinite("clip norm is \(header.clipNorm)") }
        guard header.noiseMultiplier.isFinite else { throw .nonFinite("noise multiplier is \(header.noiseMultiplier)") }
        guard header.samplingRate.isFinite else { throw .nonFinite("sampling rate is \(header.samplingRate)") }
        guard header.scale.isFinite else { throw .nonFinite("grid scale is \(header.scale)") }
        guard header.clipNorm == plan.clipNorm else {
            throw .planMismatch("clip norm is \(header.clipNorm), the plan's is \(plan.clipNorm)")
        }
        switch header.mode {
        case .local:
            guard header.noiseMultiplier >= plan.noiseMultiplier else {
                throw .planMismatch("noise multiplier \(header.noiseMultiplier) is below the plan's \(plan.noiseMultiplier)")
            }
        default:
            guard header.noiseMultiplier >= 0 else {
                throw .planMismatch("noise multiplier \(header.noiseMultiplier) is negative")
            }
        }
        guard header.samplingRate > 0, header.samplingRate <= plan.samplingRate else {
            throw .planMismatch("sampling rate \(header.samplingRate) is not in (0, \(plan.samplingRate)], the plan's rate")
        }
        guard header.contributions >= 1, header.contributions <= plan.maxContributions else {
            throw .planMismatch("update carries \(header.contributions) contributions; the plan allows 1...\(plan.maxContributions) for the \(plan.unit.name) unit")
        }
        do {
            try header.checkFields()
        } catch {
            throw .malformedUpdate("header field rejected: \(error.message)")
        }
        let deviceNoise = header.mode == .local ? header.noiseMultiplier : 0
        let grid = try plan.grid(dimension: dimension, deviceNoiseMultiplier: deviceNoise)
        guard scalesMatch(header.scale, grid.scale) else {
            throw .planMismatch("grid scale is \(header.scale), the plan implies \(grid.scale)")
        }

        // Values: range, padding and the exact squared norm, streamed.
        var reader: UpdateEnvelope.PackedValues
        do {
            reader = try UpdateEnvelope.PackedValues(bytes, header: header)
        } catch {
            throw .malformedUpdate(error.message)
        }
        var norm = SquaredNorm()
        var index = 0
        while let v = reader.next() {
            guard v >= -reader.limit else {
                throw .valueOutOfRange("value \(index) is \(v), below -(2^\(header.bitWidth - 1) - 1) = \(-reader.limit)")
            }
            norm.add(v)
            index += 1
        }
        guard reader.paddingIsZero else { throw .malformedUpdate("padding bits after the last value are not zero") }

        // Norm bound.
        let k = header.contributions
        let bound: Double
        switch header.mode {
        case .local:
            bound = try localNormBound(grid: grid, contributions: k, noiseMultiplier: header.noiseMultiplier)
            guard norm.doubleValue <= bound * bound else {
                throw .normBoundExceeded("‖v‖₂ = \(norm.squareRoot) exceeds the local-mode bound \(bound) (k·Δ + σ(√d + √(2t)), k = \(k), Δ = \(grid.sensitivity))")
            }
        default:
            let deltaSquaredFloor = UInt64(IntegerGrid.sensitivitySquared(scale: grid.scale, clipNorm: grid.clipNorm,
                                                                            dimension: grid.dimension,
                                                                            beta: grid.roundingBeta).rounded(.down))
            let kk = UInt64(k) * UInt64(k)
            let limit = kk.multipliedFullWidth(by: deltaSquaredFloor)
            guard !norm.exceeds(high: limit.high, low: limit.low) else {
                throw .normBoundExceeded("‖v‖₂² = \(norm.doubleValue) exceeds k²·⌊Δ²⌋ = \(kk)·\(deltaSquaredFloor) (k = \(k), Δ = \(grid.sensitivity))")
            }
            bound = Double(k) * grid.sensitivity
        }

        return ValidatedUpdate(modelVersion: header.modelVersion, staleness: staleness,
                               idempotencyKey: header.idempotencyKey, contributions: k, dimension: header.dimension,
                               squaredNorm: norm.doubleValue, normBound: bound, mode: header.mode, unit: header.unit,
                               bitWidth: header.bitWidth, scale: header.scale, noiseMultiplier: header.noiseMultiplier,
                               samplingRate: header.samplingRate, checksum: header.checksum)
    }

    /// The local-mode bound on ‖v‖₂ in grid units: k·Δ + σ·(√d + √(2t)).
    ///
    /// The k rounded contributions sum to norm ≤ k·Δ (triangle inequality; each passed the
    /// device's exact check). The device's noise is d independent discrete Gaussians with
    /// parameter σ² (z·Δ)² rounded up as `DiscreteGaussian(varianceAtLeast:)` does; each is
    /// σ-subgaussian (Canonne, Kamath, Steinke 2020), so by Hsu, Kakade, Zhang 2012 (Thm. 1)
    /// ‖N‖₂² ≤ σ²(d + 2√(dt) + 2t) ≤ σ²(√d + √(2t))² except with probability e^−t.
    /// Saturation to the bit width only shrinks coordinates.
    public static func localNormBound(grid: IntegerGrid, contributions: Int, noiseMultiplier: Double) throws(AggregationError) -> Double {
        let sigma: Double
        do {
            let target = noiseMultiplier * grid.sensitivity
            sigma = try DiscreteGaussian(varianceAtLeast: target * target).variance.squareRoot()
        } catch {
            throw .planMismatch("noise multiplier \(noiseMultiplier) gives no discrete Gaussian on this grid: \(error.message)")
        }
        let d = Double(grid.dimension)
        return Double(contributions) * grid.sensitivity + sigma * (d.squareRoot() + (2 * localTailExponent).squareRoot())
    }

    /// Whether two grid scales agree within `scaleTolerance` (relative).
    static func scalesMatch(_ a: Double, _ b: Double) -> Bool {
        guard a > 0, b > 0 else { return false }
        let diff = a > b ? a - b : b - a
        return diff <= scaleTolerance * (a > b ? a : b)
    }

    /// The reason for a structural failure of `UpdateEnvelope.readHeader`.
    private static func structuralError(_ error: PrivacyError, bytes: [UInt8]) -> AggregationError {
        if error == .unsupportedEnvelopeVersion {
            let version = bytes.count >= 10 ? Int(bytes[8]) | Int(bytes[9]) << 8 : -1
            return .unsupportedFormatVersion("format version is \(version); this server reads version \(UpdateEnvelope.formatVersion)")
        }
        if error == .envelopeChecksumMismatch {
            return .checksumMismatch("the CRC-32 in the last 4 bytes does not match the \(bytes.count - 4) bytes before it")
        }
        if error == .truncatedEnvelope {
            return .malformedUpdate("body is \(bytes.count) bytes, not the length its header implies (at least \(UpdateEnvelope.headerSize + UpdateEnvelope.checksumSize))")
        }
        if error == .invalidBitWidth {
            return .malformedUpdate("bit width is \(bytes.count > 12 ? Int(bytes[12]) : -1), not in 4...32")
        }
        return .malformedUpdate(error.message)
    }
}

/// An exact 128-bit sum of squares of grid values.
struct SquaredNorm {
    var high: UInt64 = 0
    var low: UInt64 = 0

    /// Adds v².
    mutating func add(_ v: Int64) {
        let m = v.magnitude
        let p = m.multipliedFullWidth(by: m)
        let (sum, carry) = low.addingReportingOverflow(p.low)
        low = sum
        high = high &+ p.high &+ (carry ? 1 : 0)
    }

    /// Whether the sum is above (high, low).
    func exceeds(high h: UInt64, low l: UInt64) -> Bool {
        high > h || (high == h && low > l)
    }

    /// The sum as a double (rounded).
    var doubleValue: Double { Double(high) * 0x1p64 + Double(low) }

    /// √ of the sum (for messages).
    var squareRoot: Double { doubleValue.squareRoot() }
}
