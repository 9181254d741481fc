/// L2 clipping of model updates.
///
/// An update is the dense difference between the locally trained global parameters and the
/// global model it started from. Clipping bounds its L2 norm by `C`, which is what the noise is
/// calibrated to. Non-finite coordinates are rejected with `PrivacyError.nonFiniteUpdate`
/// (clipping cannot repair NaN, and ∞ would make the scale factor 0 or NaN).
public enum Clipping {
    /// The L2 norm of `vector`, computed in double precision without overflow.
    ///
    /// Uses the scaled sum of squares (max |x| · √Σ(x/max)²), so 1e300-sized coordinates do not
    /// overflow. Throws `nonFiniteUpdate` on NaN or ±∞ and `emptyUpdate` on an empty vector.
    public static func l2Norm<F: BinaryFloatingPoint>(_ vector: [F]) throws(PrivacyError) -> Double {
        if vector.isEmpty { throw .emptyUpdate }
        var largest = 0.0
        for x in vector {
            let v = Double(x)
            if !v.isFinite { throw .nonFiniteUpdate }
            let a = v.magnitude
            if a > largest { largest = a }
        }
        if largest == 0 { return 0 }
        var sum = 0.0
        for x in vector {
            let r = Double(x) / largest
            sum += r * r
        }
        return largest * hearthSqrt(sum)
    }

    /// `vector` scaled to L2 norm at most `clipNorm` (unchanged if already within it).
    ///
    /// The scale factor carries a relative safety margin of 1e-12 so that the clipped norm,
    /// recomputed in floating point, is never above `clipNorm`.
    public static func clip<F: BinaryFloatingPoint>(_ vector: [F], to clipNorm: Double) throws(PrivacyError) -> [Double] {
        guard clipNorm.isFinite, clipNorm > 0 else { throw .invalidClipNorm }
        let norm = try l2Norm(vector)
        if norm <= clipNorm {
            return vector.map { Double($0) }
        }
        let factor = clipNorm / norm * (1 - 1e-12)
        return vector.map { Double($0) * factor }
    }
}
