#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthControl
import HearthCore
import HearthDatasets
import HearthLocalAPI

/// The CSV readers: `hearthctl events import` (`EventCSV`), and the dataset and catalogue CSVs of
/// the tools (`CSVTable`, `InteractionDataset(table:)`, `Catalog(itemsCSVAt:)`, which
/// `hearth-aggregator init --catalog` uses).
///
/// Properties, beyond not crashing:
/// - every event the import accepts is a valid `EventRecord` on a real data line, lines in
///   order, and the batch the import would send is accepted, unchanged, by the local API's
///   `POST /v1/events` parser (the CSV never accepts what the agent refuses);
/// - every `CSVTable` row has the header's field count; a dataset's events index its catalogue
///   and each user's events are in time order; a catalogue's ids are non-empty and unique.
enum FuzzTarget {
    static let handler = LocalAPIRequestHandler(backend: NoBackend())
    /// `ControlCommands.importBatchSize` (Commands.swift is not in the fuzz build: it needs libcurl).
    static let importBatchSize = 500
    /// Where `Catalog(itemsCSVAt:)` reads the input (it takes a path): in memory when /dev/shm
    /// is there, else /tmp; removed at exit.
    static let catalogPath: String = {
        atexit { unlink(FuzzTarget.catalogPath) }
        return (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/hearth-fuzz-catalog-\(getpid()).csv"
    }()

    static func run(_ bytes: [UInt8]) {
        if let text = String(validating: bytes, as: UTF8.self) { checkEventImport(text) }
        checkDataset(bytes)
        checkCatalog(bytes)
    }

    static func checkEventImport(_ text: String) {
        guard let csv = try? EventCSV(text: text), let events = try? csv.allEvents() else { return }
        var previousLine = 1
        for event in events {
            require(event.line > previousLine, "event lines out of order: \(event.line) after \(previousLine)")
            previousLine = event.line
            let record = event.record
            let again = try? EventRecord(item: record.item, kind: record.kind, session: record.session,
                                         quantity: record.quantity, timestampMilliseconds: record.timestampMilliseconds)
            require(again == record, "the import accepted an event EventRecord refuses (line \(event.line))")
        }
        for start in stride(from: 0, to: events.count, by: importBatchSize) {
            let batch = events[start ..< min(events.count, start + importBatchSize)]
            let body = JSONValue.object(["events": .array(batch.map(\.json))]).serializedBytes()
            do throws(LocalAPIError) {
                let parsed = try handler.parseEvents(body)
                require(parsed == batch.map(\.record), "the local API read the import's batch differently")
            } catch {
                fatalError("property violated: the local API refuses a batch the import accepted: \(error)")
            }
        }
    }

    static func checkDataset(_ bytes: [UInt8]) {
        guard let table = try? CSVTable(bytes: bytes) else { return }
        for row in table.rows { require(row.count == table.header.count, "a CSVTable row has \(row.count) fields, the header \(table.header.count)") }
        for options in [InteractionDataset.Options(), InteractionDataset.Options(ratingThreshold: 3, maxItems: 3)] {
            guard let dataset = try? InteractionDataset(table: table, options: options) else { continue }
            require(dataset.userIDs.count == dataset.sequences.count, "users and sequences differ in number")
            for sequence in dataset.sequences {
                require(!sequence.isEmpty, "a user without events")
                for event in sequence { require(Int(event.item) < dataset.catalog.count && event.item >= 0, "an event outside the catalogue") }
                for (a, b) in zip(sequence, sequence.dropFirst()) { require(a.timestamp <= b.timestamp, "events out of time order") }
            }
        }
    }

    static func checkCatalog(_ bytes: [UInt8]) {
        guard let file = fopen(catalogPath, "wb") else { return }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        guard fclose(file) == 0, written == bytes.count else { return }
        guard let catalog = try? Catalog(itemsCSVAt: catalogPath, maxItems: 50) else { return }
        require(catalog.count > 0 && catalog.count <= 50, "a catalogue of \(catalog.count) items")
        require(!catalog.ids.contains(""), "a catalogue with an empty id")
        require(Set(catalog.ids).count == catalog.count, "a catalogue with duplicate ids")
    }

    /// Import, dataset and catalogue files, valid and a few edge cases.
    static func seeds() -> [(String, [UInt8])] {
        let texts: [(String, String)] = [
            ("events.csv", #"""
                item,kind,session,timestamp_ms,quantity
                sku-1,view,s1,1700000000000,
                sku-2,purchase,s1,1700000000500,2
                "café, ""au lait""",cart,s2,0,1

                sku-3,click,"s 3",9223372036854775807,
                """#),
            ("events-reordered.csv", "timestamp_ms,session,kind,item\r\n5,s,view,a\r\n6,s,click,b\r\n"),
            ("dataset.csv", #"""
                user_id,item_id,rating,timestamp,basket
                u1,i1,4.5,100,1
                u1,i2,2,90,1
                u2,"i,3",5,100,2
                u2,i1,3.5,-4,18446744073709551615
                """#),
            ("items.csv", #"""
                item_id,product_category,brand
                i1,Shoes|Running,Acme
                i2,,
                i1,dup,dup
                "i""3",Tea,Ωmega
                """#),
        ]
        return texts.map { ($0.0, Array($0.1.utf8)) }
    }
}

/// A backend the parsing never reaches.
struct NoBackend: LocalAPIBackend {
    func ingest(_ events: [EventRecord]) async throws -> IngestResult { throw LocalAPIError.internalError("unused") }
    func recommendations(session: String, k: Int, exclude: [String]) async throws -> [RankedItem] {
        throw LocalAPIError.internalError("unused")
    }
    func rank(session: String, candidates: [String]) async throws -> [RankedItem] { throw LocalAPIError.internalError("unused") }
    func status() async throws -> StatusReport { throw LocalAPIError.internalError("unused") }
    func privacy() async throws -> PrivacyReport { throw LocalAPIError.internalError("unused") }
    func profile() async throws -> ProfileReport { throw LocalAPIError.internalError("unused") }
    func eraseAll() async throws -> EraseResult { throw LocalAPIError.internalError("unused") }
}
