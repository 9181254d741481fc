/// Process and file helpers for the cross smoke program (`cross/smoke`).
///
/// The smoke program is built twice: natively by SwiftPM and as Embedded Swift for
/// aarch64-none-none-elf, linked into a glibc executable. Embedded Swift has neither Foundation,
/// Glibc nor `CommandLine`, so both builds take their arguments and do their file I/O through
/// these few C functions (one code path, no `#if`).
#ifndef HEARTH_SMOKE_SUPPORT_H
#define HEARTH_SMOKE_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Number of command-line arguments, the program name included (captured before `main`).
int32_t hearth_smoke_argument_count(void);
/// Argument `index` in [0, hearth_smoke_argument_count()), or NULL outside that range.
const char *hearth_smoke_argument(int32_t index);

/// Reads the whole file at `path` into a new buffer (free it with `hearth_smoke_free`) and stores
/// its size in `length`. Returns NULL on failure (`hearth_smoke_error` says why).
uint8_t *hearth_smoke_read_file(const char *path, size_t *length);
/// Writes `length` bytes to `path` (created or truncated, mode 0644). Returns 0 or -1 (errno set).
int32_t hearth_smoke_write_file(const char *path, const uint8_t *bytes, size_t length);
/// Frees a buffer from `hearth_smoke_read_file`.
void hearth_smoke_free(void *buffer);
/// The message for the current `errno`.
const char *hearth_smoke_error(void);

/// Writes `text` and a newline to standard error.
void hearth_smoke_print_error(const char *text);
/// Flushes standard output and ends the process with `status`.
void hearth_smoke_exit(int32_t status) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif
#endif
