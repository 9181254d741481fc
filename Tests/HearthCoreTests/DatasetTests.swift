import HearthCore
import HearthDatasets
import HearthTestSupport
import Testing

@Suite("Datasets", .computeLane)
struct DatasetTests {
    @Test("CSV: quotes, escaped quotes, CRLF and embedded commas")
    func csvParsing() throws {
        let text = "item_id,title\r\n1,\"Toy Story, the \"\"movie\"\"\"\r\n2,plain\n"
        let table = try CSVTable(bytes: Array(text.utf8))
        #expect(table.header == ["item_id", "title"])
        #expect(table.rows == [["1", "Toy Story, the \"movie\""], ["2", "plain"]])
    }

    @Test("CSV: a short row and an unterminated quote are clear errors")
    func csvErrors() {
        #expect(throws: DatasetError.malformedRow("")) { try CSVTable(bytes: Array("a,b\n1\n".utf8)) }
        #expect(throws: DatasetError.malformedRow("")) { try CSVTable(bytes: Array("a,b\n1,\"x\n".utf8)) }
        #expect(throws: DatasetError.empty("")) { try CSVTable(bytes: []) }
        #expect(throws: DatasetError.unreadable("")) { try CSVTable(contentsOf: "/nonexistent/ratings.csv") }
    }

    @Test("interactions are grouped per user and sorted by time; thresholds and caps apply")
    func interactions() throws {
        let text = """
        user_id,item_id,rating,timestamp
        u1,a,5,30
        u1,b,2,10
        u2,a,4,5
        u1,c,4,20
        u2,c,4.5,1
        """
        let table = try CSVTable(bytes: Array(text.utf8))
        let all = try InteractionDataset(table: table)
        #expect(all.userIDs == ["u1", "u2"])
        #expect(all.sequences[0].map { all.catalog.ids[Int($0.item)] } == ["b", "c", "a"])
        let liked = try InteractionDataset(table: table, options: .init(ratingThreshold: 4))
        #expect(liked.eventCount == 4)
        let capped = try InteractionDataset(table: table, options: .init(maxItems: 2))
        #expect(capped.catalog.ids == ["a", "c"])
        #expect(throws: DatasetError.missingColumn("")) {
            try InteractionDataset(table: try CSVTable(bytes: Array("user_id,item_id\n1,2\n".utf8)))
        }
        #expect(throws: DatasetError.malformedRow("")) {
            try InteractionDataset(table: try CSVTable(bytes: Array("user_id,item_id,timestamp\n1,2,soon\n".utf8)))
        }
    }

    @Test("the shared MovieLens file loads with its documented size")
    func movieLens() throws {
        let path = try #require(Fixtures.datasetFile("movielens-small-dslabs/ratings.csv"),
                                "shared datasets not found: set HEARTH_DATASETS or put shared/ beside the checkout")
        let data = try InteractionDataset(csvAt: path)
        #expect(data.eventCount == 100_004)
        #expect(data.sequences.count == 671)
        #expect(data.catalog.count == 9_066)
        for sequence in data.sequences {
            #expect(zip(sequence, sequence.dropFirst()).allSatisfy { $0.timestamp <= $1.timestamp })
        }
    }

    @Test("the built-in example is deterministic and covers every aisle")
    func syntheticShop() {
        let a = SyntheticShop.dataset(users: 10, seed: 4)
        let b = SyntheticShop.dataset(users: 10, seed: 4)
        #expect(a.sequences == b.sequences)
        #expect(a.catalog.count == SyntheticShop.aisles.count * 12)
        #expect(Set(a.catalog.attributes.map { $0.category }) == Set(SyntheticShop.aisles))
    }
}
