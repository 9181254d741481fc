/// Errors reading a dataset from disk.
public struct DatasetError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case unreadable
        case missingColumn
        case malformedRow
        case empty
    }

    private let code: Code
    /// What went wrong and where.
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The file could not be opened or read.
    public static func unreadable(_ message: String) -> DatasetError { DatasetError(.unreadable, message) }
    /// A required column is not in the header.
    public static func missingColumn(_ message: String) -> DatasetError { DatasetError(.missingColumn, message) }
    /// A row has the wrong number of fields or an unparsable value.
    public static func malformedRow(_ message: String) -> DatasetError { DatasetError(.malformedRow, message) }
    /// Nothing usable is left after filtering.
    public static func empty(_ message: String) -> DatasetError { DatasetError(.empty, message) }

    public var description: String { message }
    public static func == (lhs: DatasetError, rhs: DatasetError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
