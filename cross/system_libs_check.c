/// Calls every shim of the C system-library targets (Sources/CHearthSQLite/shims.h,
/// Sources/CHearthCurl/shims.h) against the real libsqlite3 and libcurl, so that a cross build
/// proves the shims compile, link and work for the target architecture (run under qemu by
/// cross/check-system-libs-aarch64.sh; also built and run natively there).
///
/// SQLite: configuration shims before initialisation, an in-memory database, the defensive flag
/// through `hearth_sqlite3_db_config_int`, text bound with `hearth_sqlite3_transient` from a
/// buffer overwritten before the statement runs (SQLite must have copied it), read back.
/// libcurl: every setopt and getinfo shim, and a transfer of a local file (`file://`, no network)
/// through the io-callback shim, compared byte for byte.
/// Prints one line per check and exits non-zero on the first failure.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "CHearthCurl/shims.h"
#include "CHearthSQLite/shims.h"

#define CHECK(condition, ...)                                        \
    do {                                                             \
        if (!(condition)) {                                          \
            fprintf(stderr, "system-libs-check: FAIL: " __VA_ARGS__); \
            fprintf(stderr, " (%s:%d)\n", __FILE__, __LINE__);      \
            exit(1);                                                 \
        }                                                            \
    } while (0)

static void check_sqlite(void) {
    CHECK(hearth_sqlite3_config_none(SQLITE_CONFIG_MULTITHREAD) == SQLITE_OK, "sqlite3_config(MULTITHREAD)");
    CHECK(hearth_sqlite3_config_int(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK, "sqlite3_config(MEMSTATUS, 0)");
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK, "sqlite3_open(:memory:)");
    int defensive = -1;
    CHECK(hearth_sqlite3_db_config_int(db, SQLITE_DBCONFIG_DEFENSIVE, 1, &defensive) == SQLITE_OK &&
              defensive == 1,
          "sqlite3_db_config(DEFENSIVE, 1) gave %d", defensive);
    CHECK(sqlite3_exec(db, "CREATE TABLE events (id INTEGER PRIMARY KEY, item TEXT NOT NULL)", NULL, NULL, NULL) ==
              SQLITE_OK,
          "CREATE TABLE: %s", sqlite3_errmsg(db));
    sqlite3_stmt *insert = NULL;
    CHECK(sqlite3_prepare_v2(db, "INSERT INTO events (item) VALUES (?1)", -1, &insert, NULL) == SQLITE_OK,
          "prepare INSERT: %s", sqlite3_errmsg(db));
    char item[] = "sku-0042";
    CHECK(sqlite3_bind_text(insert, 1, item, -1, hearth_sqlite3_transient()) == SQLITE_OK, "bind_text");
    memset(item, 'x', sizeof item - 1); // SQLITE_TRANSIENT: SQLite copied the text at bind time
    CHECK(sqlite3_step(insert) == SQLITE_DONE, "INSERT step: %s", sqlite3_errmsg(db));
    sqlite3_finalize(insert);
    sqlite3_stmt *select = NULL;
    CHECK(sqlite3_prepare_v2(db, "SELECT item, count(*) OVER () FROM events", -1, &select, NULL) == SQLITE_OK,
          "prepare SELECT: %s", sqlite3_errmsg(db));
    CHECK(sqlite3_step(select) == SQLITE_ROW, "SELECT step: %s", sqlite3_errmsg(db));
    const char *read_back = (const char *)sqlite3_column_text(select, 0);
    CHECK(read_back != NULL && strcmp(read_back, "sku-0042") == 0 && sqlite3_column_int(select, 1) == 1,
          "read back '%s'", read_back ? read_back : "(null)");
    sqlite3_finalize(select);
    CHECK(sqlite3_close(db) == SQLITE_OK, "sqlite3_close");
    printf("sqlite %s: config, db_config(DEFENSIVE), transient bind, in-memory round trip: ok\n",
           sqlite3_libversion());
}

/// Collects a transfer's body (the io-callback shim's target).
struct body {
    char data[256];
    size_t length;
};

static size_t collect(char *buffer, size_t size, size_t count, void *context) {
    struct body *body = context;
    size_t bytes = size * count;
    if (bytes > sizeof body->data - body->length) return 0; // makes curl fail the transfer
    memcpy(body->data + body->length, buffer, bytes);
    body->length += bytes;
    return bytes;
}

static void check_curl(void) {
    static const char payload[] = "hearth aarch64 libcurl check\n";
    char path[] = "/tmp/hearth-curl-check-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    CHECK(write(fd, payload, sizeof payload - 1) == (ssize_t)(sizeof payload - 1), "write %s", path);
    close(fd);
    char url[sizeof path + 16];
    snprintf(url, sizeof url, "file://%s", path);

    CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK, "curl_global_init");
    CURL *handle = curl_easy_init();
    CHECK(handle != NULL, "curl_easy_init");
    struct body body = {.length = 0};
    struct curl_slist *headers = curl_slist_append(NULL, "X-Hearth-Check: 1");
    CHECK(headers != NULL, "curl_slist_append");
    CHECK(hearth_curl_setopt_string(handle, CURLOPT_URL, url) == CURLE_OK, "setopt_string(URL)");
    CHECK(hearth_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, 10000) == CURLE_OK, "setopt_long(TIMEOUT_MS)");
    CHECK(hearth_curl_setopt_off_t(handle, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)4096) == CURLE_OK,
          "setopt_off_t(MAXFILESIZE_LARGE)");
    CHECK(hearth_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headers) == CURLE_OK, "setopt_slist(HTTPHEADER)");
    CHECK(hearth_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, &body) == CURLE_OK, "setopt_pointer(WRITEDATA)");
    CHECK(hearth_curl_setopt_io_callback(handle, CURLOPT_WRITEFUNCTION, collect) == CURLE_OK,
          "setopt_io_callback(WRITEFUNCTION)");
    CURLcode result = curl_easy_perform(handle);
    unlink(path);
    CHECK(result == CURLE_OK, "curl_easy_perform(%s): %s", url, curl_easy_strerror(result));
    CHECK(body.length == sizeof payload - 1 && memcmp(body.data, payload, body.length) == 0,
          "body: %zu bytes, expected %zu", body.length, sizeof payload - 1);
    long code = -1;
    CHECK(hearth_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 0,
          "getinfo_long(RESPONSE_CODE) = %ld (file:// has none)", code);
    double seconds = -1;
    CHECK(hearth_curl_getinfo_double(handle, CURLINFO_TOTAL_TIME, &seconds) == CURLE_OK && seconds >= 0,
          "getinfo_double(TOTAL_TIME) = %f", seconds);
    char *effective = NULL;
    CHECK(hearth_curl_getinfo_string(handle, CURLINFO_EFFECTIVE_URL, &effective) == CURLE_OK && effective != NULL &&
              strcmp(effective, url) == 0,
          "getinfo_string(EFFECTIVE_URL) = %s", effective ? effective : "(null)");
    curl_slist_free_all(headers);
    curl_easy_cleanup(handle);
    curl_global_cleanup();
    printf("libcurl %s: every setopt/getinfo shim, file:// transfer through the callback (%zu bytes): ok\n",
           curl_version_info(CURLVERSION_NOW)->version, body.length);
}

int main(void) {
    check_sqlite();
    check_curl();
    printf("system-libs-check: ok\n");
    return 0;
}
