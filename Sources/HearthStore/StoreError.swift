import CHearthSQLite

/// A SQLite result code, primary or extended (`SQLITE_IOERR_FSYNC` keeps its full value).
///
/// Like GRDB's `ResultCode` or swift-system's `Errno`: a raw value with named constants, so
/// codes SQLite adds later still round-trip. Compare `primary` to match a family
/// (`error.resultCode?.primary == .ioerr`).
public struct SQLiteResultCode: RawRepresentable, Hashable, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The primary code (low 8 bits): `SQLITE_IOERR_FSYNC` → `SQLITE_IOERR`.
    public var primary: SQLiteResultCode { SQLiteResultCode(rawValue: rawValue & 0xFF) }
    /// True when this is an extended code (more than the primary code).
    public var isExtended: Bool { rawValue != rawValue & 0xFF }

    public static let ok = SQLiteResultCode(rawValue: SQLITE_OK)
    public static let error = SQLiteResultCode(rawValue: SQLITE_ERROR)
    public static let `internal` = SQLiteResultCode(rawValue: SQLITE_INTERNAL)
    public static let perm = SQLiteResultCode(rawValue: SQLITE_PERM)
    public static let abort = SQLiteResultCode(rawValue: SQLITE_ABORT)
    public static let busy = SQLiteResultCode(rawValue: SQLITE_BUSY)
    public static let locked = SQLiteResultCode(rawValue: SQLITE_LOCKED)
    public static let nomem = SQLiteResultCode(rawValue: SQLITE_NOMEM)
    public static let readonly = SQLiteResultCode(rawValue: SQLITE_READONLY)
    public static let interrupt = SQLiteResultCode(rawValue: SQLITE_INTERRUPT)
    public static let ioerr = SQLiteResultCode(rawValue: SQLITE_IOERR)
    public static let corrupt = SQLiteResultCode(rawValue: SQLITE_CORRUPT)
    public static let notfound = SQLiteResultCode(rawValue: SQLITE_NOTFOUND)
    public static let full = SQLiteResultCode(rawValue: SQLITE_FULL)
    public static let cantopen = SQLiteResultCode(rawValue: SQLITE_CANTOPEN)
    public static let `protocol` = SQLiteResultCode(rawValue: SQLITE_PROTOCOL)
    public static let schema = SQLiteResultCode(rawValue: SQLITE_SCHEMA)
    public static let toobig = SQLiteResultCode(rawValue: SQLITE_TOOBIG)
    public static let constraint = SQLiteResultCode(rawValue: SQLITE_CONSTRAINT)
    public static let mismatch = SQLiteResultCode(rawValue: SQLITE_MISMATCH)
    public static let misuse = SQLiteResultCode(rawValue: SQLITE_MISUSE)
    public static let nolfs = SQLiteResultCode(rawValue: SQLITE_NOLFS)
    public static let auth = SQLiteResultCode(rawValue: SQLITE_AUTH)
    public static let range = SQLiteResultCode(rawValue: SQLITE_RANGE)
    public static let notadb = SQLiteResultCode(rawValue: SQLITE_NOTADB)
    public static let row = SQLiteResultCode(rawValue: SQLITE_ROW)
    public static let done = SQLiteResultCode(rawValue: SQLITE_DONE)
    // A few extended codes the store looks at. Swift cannot import their macros (they are
    // expressions), so they are spelled out as in sqlite3.h: primary | (n << 8).
    /// `SQLITE_CONSTRAINT_CHECK`.
    public static let constraintCheck = SQLiteResultCode(rawValue: SQLITE_CONSTRAINT | (1 << 8))
    /// `SQLITE_CONSTRAINT_UNIQUE`.
    public static let constraintUnique = SQLiteResultCode(rawValue: SQLITE_CONSTRAINT | (8 << 8))
    /// `SQLITE_IOERR_FSYNC`.
    public static let ioerrFsync = SQLiteResultCode(rawValue: SQLITE_IOERR | (4 << 8))
    /// `SQLITE_READONLY_DIRECTORY`.
    public static let readonlyDirectory = SQLiteResultCode(rawValue: SQLITE_READONLY | (6 << 8))
}

extension SQLiteResultCode: CustomStringConvertible {
    /// SQLite's own English text for the code, with the number (`"database or disk is full (13)"`).
    public var description: String {
        let text = sqlite3_errstr(rawValue).map { String(cString: $0) } ?? "unknown result code"
        return "\(text) (\(rawValue))"
    }
}

/// Errors raised by the device store.
///
/// One struct over a private code enum (as `CoreError`), so cases can be added without breaking
/// callers, plus a message for people and, when SQLite reported it, the (extended) result code.
/// Errors compare by kind only: `error == .full("")` matches any full-disk error.
public struct StoreError: Error, Hashable, Sendable {
    private enum Code: Hashable, Sendable {
        case sqlite
        case busy
        case full
        case corrupt
        case notADatabase
        case readOnly
        case cannotOpen
        case ioError
        case constraint
        case schemaTooNew
        case invalidArgument
        case duplicateKey
        case closed
    }

    private let code: Code
    /// What went wrong, for people.
    public let message: String
    /// The SQLite result code (extended when SQLite gave one), or nil for the store's own checks.
    public let resultCode: SQLiteResultCode?

    private init(_ code: Code, _ message: String, _ resultCode: SQLiteResultCode? = nil) {
        self.code = code
        self.message = message
        self.resultCode = resultCode
    }

    /// An error SQLite reported: the kind follows the primary code (FULL → `.full`, …).
    static func sqlite(_ resultCode: SQLiteResultCode, _ message: String) -> StoreError {
        let kind: Code
        switch resultCode.primary {
        case .busy, .locked: kind = .busy
        case .full: kind = .full
        case .corrupt: kind = .corrupt
        case .notadb: kind = .notADatabase
        case .readonly: kind = .readOnly
        case .cantopen: kind = .cannotOpen
        case .ioerr: kind = .ioError
        case .constraint: kind = .constraint
        default: kind = .sqlite
        }
        return StoreError(kind, message, resultCode)
    }

    /// Any other SQLite failure (see `resultCode`).
    public static func sqlite(_ message: String) -> StoreError { StoreError(.sqlite, message, .error) }
    /// The database stayed locked by another connection past the busy timeout.
    public static func busy(_ message: String) -> StoreError { StoreError(.busy, message, .busy) }
    /// The disk (or the configured page limit) is full; the failed write was rolled back.
    public static func full(_ message: String) -> StoreError { StoreError(.full, message, .full) }
    /// The database file is damaged.
    public static func corrupt(_ message: String) -> StoreError { StoreError(.corrupt, message, .corrupt) }
    /// The file is not a SQLite database at all (garbage, wrong file, encrypted).
    public static func notADatabase(_ message: String) -> StoreError { StoreError(.notADatabase, message, .notadb) }
    /// The database or its directory cannot be written.
    public static func readOnly(_ message: String) -> StoreError { StoreError(.readOnly, message, .readonly) }
    /// The database file cannot be opened or created (missing directory, permissions).
    public static func cannotOpen(_ message: String) -> StoreError { StoreError(.cannotOpen, message, .cantopen) }
    /// The operating system reported an I/O error (see the extended `resultCode`).
    public static func ioError(_ message: String) -> StoreError { StoreError(.ioError, message, .ioerr) }
    /// A schema constraint rejected a row (the whole transaction was rolled back).
    public static func constraint(_ message: String) -> StoreError { StoreError(.constraint, message, .constraint) }
    /// The database was written by a newer Hearth (its schema version is unknown here).
    public static func schemaTooNew(_ message: String) -> StoreError { StoreError(.schemaTooNew, message) }
    /// An argument is out of its documented range (the message names it).
    public static func invalidArgument(_ message: String) -> StoreError { StoreError(.invalidArgument, message) }
    /// An outbox idempotency key is already in use.
    public static func duplicateKey(_ message: String) -> StoreError { StoreError(.duplicateKey, message, .constraintUnique) }
    /// The store was closed.
    public static func closed(_ message: String) -> StoreError { StoreError(.closed, message, .misuse) }

    public static func == (lhs: StoreError, rhs: StoreError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

extension StoreError: CustomStringConvertible {
    public var description: String {
        if let resultCode { return "\(message) [sqlite: \(resultCode)]" }
        return message
    }
}
