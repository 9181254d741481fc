/// A radix-2 complex FFT in pure Swift (for composing privacy loss distributions).
///
/// Iterative Cooley–Tukey with bit reversal on split real/imaginary arrays. Twiddle factors come
/// from a Taylor-series sine/cosine with quadrant reduction (the module has no libm sin/cos).
enum FFT {
    /// cos(x), sin(x) for x in [0, 2π], accurate to ~1e-16.
    static func cosSin(_ x: Double) -> (Double, Double) {
        let halfPi = 1.5707963267948966
        let quadrant = (x / halfPi).rounded()
        let r = x - quadrant * halfPi  // |r| ≤ π/4
        let r2 = r * r
        // Taylor series to r^17 / r^18: error < (π/4)^19/19! ≈ 1e-18.
        var s = 0.0
        var c = 0.0
        var termS = r
        var termC = 1.0
        var n = 1.0
        for _ in 0..<10 {
            s += termS
            c += termC
            termS *= -r2 / ((n + 1) * (n + 2))
            termC *= -r2 / (n * (n + 1))
            n += 2
        }
        switch Int(quadrant) & 3 {
        case 0: return (c, s)
        case 1: return (-s, c)
        case 2: return (-c, -s)
        default: return (s, -c)
        }
    }

    /// In-place transform of length n = 2^k; `inverse` uses e^{+2πi/n} and divides by n.
    static func transform(re: inout [Double], im: inout [Double], inverse: Bool) {
        let n = re.count
        precondition(n > 0 && n & (n - 1) == 0 && im.count == n)
        if n == 1 { return }
        // Twiddles w_k = e^{∓2πik/n}, k < n/2, from the first octant by symmetry.
        let half = n / 2
        var wr = [Double](repeating: 0, count: half)
        var wi = [Double](repeating: 0, count: half)
        let sign = inverse ? 1.0 : -1.0
        let quarter = n / 4
        let eighth = n / 8
        for k in 0..<half {
            var c: Double, s: Double
            if quarter >= 2 && k <= eighth {
                (c, s) = cosSin(2 * Double.pi * Double(k) / Double(n))
            } else if quarter >= 2 && k <= quarter {
                // cos(π/2 - x) = sin x with x = 2π(quarter - k)/n
                let m = quarter - k
                c = wi[m] * sign  // sin of the mirrored angle (already computed)
                s = wr[m]
            } else if quarter >= 2 {
                // angle in (π/2, π): cos(π - x) = -cos x, sin(π - x) = sin x
                let m = half - k
                c = -wr[m]
                s = wi[m] * sign
            } else {
                (c, s) = cosSin(2 * Double.pi * Double(k) / Double(n))
            }
            wr[k] = c
            wi[k] = sign * s
        }
        let stageRe = UnsafeMutablePointer<Double>.allocate(capacity: half)
        let stageIm = UnsafeMutablePointer<Double>.allocate(capacity: half)
        defer {
            stageRe.deallocate()
            stageIm.deallocate()
        }
        let sr = stageRe, si = stageIm
        re.withUnsafeMutableBufferPointer { rp in
            im.withUnsafeMutableBufferPointer { ip in
                wr.withUnsafeBufferPointer { wrp in
                    wi.withUnsafeBufferPointer { wip in
                        // Bit reversal.
                        var j = 0
                        for i in 1..<n {
                            var bit = n >> 1
                            while j & bit != 0 {
                                j ^= bit
                                bit >>= 1
                            }
                            j |= bit
                            if i < j {
                                let tr = rp[i]; rp[i] = rp[j]; rp[j] = tr
                                let ti = ip[i]; ip[i] = ip[j]; ip[j] = ti
                            }
                        }
                        var len = 2
                        while len <= n {
                            let halfLen = len / 2
                            let stride = n / len
                            if halfLen < 32 {
                                // Few twiddles, many blocks: twiddle outer, blocks inner.
                                for k in 0..<halfLen {
                                    let cr = wrp[k * stride], ci = wip[k * stride]
                                    var a = k
                                    while a < n {
                                        let b = a + halfLen
                                        let xr = rp[b] * cr - ip[b] * ci
                                        let xi = rp[b] * ci + ip[b] * cr
                                        rp[b] = rp[a] - xr
                                        ip[b] = ip[a] - xi
                                        rp[a] += xr
                                        ip[a] += xi
                                        a += len
                                    }
                                }
                            } else {
                                // Copy this stage's twiddles contiguously (strided reads thrash the cache).
                                for k in 0..<halfLen {
                                    sr[k] = wrp[k * stride]
                                    si[k] = wip[k * stride]
                                }
                                var start = 0
                                while start < n {
                                    for k in 0..<halfLen {
                                        let a = start + k
                                        let b = a + halfLen
                                        let cr = sr[k], ci = si[k]
                                        let xr = rp[b] * cr - ip[b] * ci
                                        let xi = rp[b] * ci + ip[b] * cr
                                        rp[b] = rp[a] - xr
                                        ip[b] = ip[a] - xi
                                        rp[a] += xr
                                        ip[a] += xi
                                    }
                                    start += len
                                }
                            }
                            len <<= 1
                        }
                        if inverse {
                            let scale = 1.0 / Double(n)
                            for i in 0..<n {
                                rp[i] *= scale
                                ip[i] *= scale
                            }
                        }
                    }
                }
            }
        }
    }
}
