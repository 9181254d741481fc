import CHearthKernels

/// One int8 scoring kernel from the C kernel list (scalar, NEON, NEON dotprod, AVX2, AVX-VNNI).
///
/// The list is compiled per architecture; `isSupported` says whether this CPU can run the
/// kernel (detected once). `preferred` is what serving uses: the best supported kernel, unless
/// `HEARTH_KERNEL_ISA` names another.
public struct ScoringKernel: @unchecked Sendable, Hashable {
    // Points at a static const entry of the C kernel list: immutable for the process lifetime.
    let entry: UnsafePointer<hearth_kernel>

    init(_ entry: UnsafePointer<hearth_kernel>) { self.entry = entry }

    /// The kernel's name, as accepted by `HEARTH_KERNEL_ISA`.
    public var name: String { String(cString: entry.pointee.name) }

    /// Whether this CPU can run the kernel.
    public var isSupported: Bool { hearth_kernel_is_supported(entry) != 0 }

    /// Every kernel compiled into this binary, worst first.
    public static var all: [ScoringKernel] {
        var kernels: [ScoringKernel] = []
        for i in 0 ..< hearth_kernel_count() {
            if let entry = hearth_kernel_at(i) { kernels.append(ScoringKernel(entry)) }
        }
        return kernels
    }

    /// The scalar reference kernel (always supported).
    public static var scalar: ScoringKernel {
        ScoringKernel(hearth_kernel_scalar())
    }

    /// The best kernel this CPU supports.
    public static var best: ScoringKernel {
        ScoringKernel(hearth_kernel_best())
    }

    /// The kernel named `name`, if compiled in and supported here.
    public static func named(_ name: String) throws(CoreError) -> ScoringKernel {
        guard let entry = hearth_kernel_named(name) else {
            let known = all.map { $0.name }.joined(separator: ", ")
            throw .unknownKernel("unknown kernel '\(name)'; this build has: \(known)")
        }
        let kernel = ScoringKernel(entry)
        guard kernel.isSupported else {
            throw .unsupportedKernel("kernel '\(name)' is not supported by this CPU")
        }
        return kernel
    }

    /// `best`, or the kernel named by `override` when it is given (e.g. `HEARTH_KERNEL_ISA`).
    public static func select(override: String?) throws(CoreError) -> ScoringKernel {
        guard let override, !override.isEmpty else { return best }
        return try named(override)
    }

    /// The value of `HEARTH_KERNEL_ISA`, or nil.
    public static var environmentOverride: String? {
        hearth_kernel_env_override().map { String(cString: $0) }
    }

    /// The kernel serving uses: chosen once per process from the CPU and `HEARTH_KERNEL_ISA`.
    public static let preferred: Result<ScoringKernel, CoreError> = {
        do throws(CoreError) { return .success(try select(override: environmentOverride)) }
        catch { return .failure(error) }
    }()

    public static func == (lhs: ScoringKernel, rhs: ScoringKernel) -> Bool { lhs.entry == rhs.entry }
    public func hash(into hasher: inout Hasher) { hasher.combine(UInt(bitPattern: entry)) }
}
