/// Typed shims over SQLite's C variadics, which Swift cannot call directly
/// (the approach of GRDB's `Sources/GRDBSQLite`).
#ifndef HEARTH_SQLITE_SHIMS_H
#define HEARTH_SQLITE_SHIMS_H
#include <sqlite3.h>

/// `sqlite3_db_config` with one int argument and an int result pointer
/// (e.g. SQLITE_DBCONFIG_DEFENSIVE, SQLITE_DBCONFIG_ENABLE_TRIGGER).
static inline int hearth_sqlite3_db_config_int(sqlite3 *db, int op, int value, int *result) {
    return sqlite3_db_config(db, op, value, result);
}

/// `sqlite3_config` with one int argument (e.g. SQLITE_CONFIG_MULTITHREAD takes none; use
/// `hearth_sqlite3_config_none` for those).
static inline int hearth_sqlite3_config_int(int op, int value) {
    return sqlite3_config(op, value);
}

/// `sqlite3_config` for options without arguments (SQLITE_CONFIG_SINGLETHREAD,
/// SQLITE_CONFIG_MULTITHREAD, SQLITE_CONFIG_SERIALIZED).
static inline int hearth_sqlite3_config_none(int op) {
    return sqlite3_config(op);
}

/// The destructor constant that makes SQLite copy bound text and blobs at once;
/// Swift cannot import the `SQLITE_TRANSIENT` macro (a cast of -1 to a function pointer).
static inline sqlite3_destructor_type hearth_sqlite3_transient(void) {
    return SQLITE_TRANSIENT;
}
#endif
