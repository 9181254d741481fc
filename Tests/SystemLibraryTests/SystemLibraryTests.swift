import CHearthCurl
import CHearthSQLite
import Testing

/// The system-library targets link and their typed shims reach the real C variadics.
@Suite("System libraries")
struct SystemLibraryTests {
    @Test("sqlite3: open an in-memory database, set a db_config option through the shim, round-trip a row")
    func sqlite() throws {
        var db: OpaquePointer?
        #expect(sqlite3_open(":memory:", &db) == SQLITE_OK)
        defer { sqlite3_close(db) }
        var enabled: Int32 = -1
        #expect(hearth_sqlite3_db_config_int(db, SQLITE_DBCONFIG_DEFENSIVE, 1, &enabled) == SQLITE_OK)
        #expect(enabled == 1)
        #expect(sqlite3_exec(db, "CREATE TABLE t(x TEXT)", nil, nil, nil) == SQLITE_OK)
        var statement: OpaquePointer?
        #expect(sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?)", -1, &statement, nil) == SQLITE_OK)
        #expect(sqlite3_bind_text(statement, 1, "héllo", -1, hearth_sqlite3_transient()) == SQLITE_OK)
        #expect(sqlite3_step(statement) == SQLITE_DONE)
        sqlite3_finalize(statement)
        #expect(sqlite3_prepare_v2(db, "SELECT x FROM t", -1, &statement, nil) == SQLITE_OK)
        #expect(sqlite3_step(statement) == SQLITE_ROW)
        let text = try #require(sqlite3_column_text(statement, 0))
        #expect(String(cString: text) == "héllo")
        sqlite3_finalize(statement)
    }

    @Test("libcurl: set typed options through the shims and read them back via getinfo")
    func curl() throws {
        #expect(curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK)
        let handle = try #require(curl_easy_init())
        defer { curl_easy_cleanup(handle) }
        #expect(hearth_curl_setopt_string(handle, CURLOPT_URL, "http://127.0.0.1:9/v1/plan") == CURLE_OK)
        #expect(hearth_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, 200) == CURLE_OK)
        #expect(hearth_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1) == CURLE_OK)
        // An unknown option number is refused by curl itself: the shim passes codes through.
        #expect(hearth_curl_setopt_long(handle, CURLoption(rawValue: 99_999), 1) != CURLE_OK)
        // Port 9 (discard) on loopback: nothing listens, so the transfer fails fast and cleanly.
        #expect(curl_easy_perform(handle) == CURLE_COULDNT_CONNECT)
        var url: UnsafeMutablePointer<CChar>?
        #expect(hearth_curl_getinfo_string(handle, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK)
        #expect(url.map { String(cString: $0) } == "http://127.0.0.1:9/v1/plan")
        var code: Int = -1
        #expect(hearth_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK)
        #expect(code == 0)
    }
}
