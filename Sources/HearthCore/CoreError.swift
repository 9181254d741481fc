/// Errors raised by the pure core: bad shapes, bad values, unreadable model files.
///
/// One struct over a private code enum, so new cases can be added without breaking callers,
/// and a message that says what was wrong. Compiles in Embedded Swift (no existentials).
public struct CoreError: Error, Hashable, Sendable {
    private enum Code: Hashable, Sendable {
        case invalidArgument
        case shapeMismatch
        case nonFinite
        case unknownItem
        case unknownKernel
        case unsupportedKernel
        case truncatedFile
        case corruptFile
        case unsupportedVersion
    }

    private let code: Code
    /// What went wrong, for people.
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// An argument is out of its documented range.
    public static func invalidArgument(_ message: String) -> CoreError { CoreError(.invalidArgument, message) }
    /// Two arrays or tensors that must agree in size do not.
    public static func shapeMismatch(_ message: String) -> CoreError { CoreError(.shapeMismatch, message) }
    /// A value that must be finite is NaN or infinite.
    public static func nonFinite(_ message: String) -> CoreError { CoreError(.nonFinite, message) }
    /// An item id is not in the catalogue.
    public static func unknownItem(_ message: String) -> CoreError { CoreError(.unknownItem, message) }
    /// `HEARTH_KERNEL_ISA` or a caller named a kernel that does not exist.
    public static func unknownKernel(_ message: String) -> CoreError { CoreError(.unknownKernel, message) }
    /// The named kernel exists but this CPU cannot run it.
    public static func unsupportedKernel(_ message: String) -> CoreError { CoreError(.unsupportedKernel, message) }
    /// A model file ends before its declared size.
    public static func truncatedFile(_ message: String) -> CoreError { CoreError(.truncatedFile, message) }
    /// A model file fails its checksum or structural checks.
    public static func corruptFile(_ message: String) -> CoreError { CoreError(.corruptFile, message) }
    /// A model file has a format version this build cannot read.
    public static func unsupportedVersion(_ message: String) -> CoreError { CoreError(.unsupportedVersion, message) }

    /// Errors compare by kind, not message: `error == .truncatedFile("")` matches any truncation.
    public static func == (lhs: CoreError, rhs: CoreError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

extension CoreError: CustomStringConvertible {
    public var description: String { message }
}
