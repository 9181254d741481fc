/// Process and file helpers for the cross smoke program; see hearth_smoke_support.h.
#define _GNU_SOURCE
#include "hearth_smoke_support.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int saved_argc;
static char **saved_argv;

/// glibc calls ELF constructors with (argc, argv, envp) on every architecture it supports, so
/// the arguments are available without Swift's `CommandLine` (absent in Embedded Swift).
__attribute__((constructor)) static void hearth_smoke_capture_arguments(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
}

int32_t hearth_smoke_argument_count(void) { return (int32_t)saved_argc; }

const char *hearth_smoke_argument(int32_t index) {
    if (index < 0 || index >= saved_argc || saved_argv == NULL) return NULL;
    return saved_argv[index];
}

uint8_t *hearth_smoke_read_file(const char *path, size_t *length) {
    *length = 0;
    FILE *file = fopen(path, "rb");
    if (file == NULL) return NULL;
    size_t capacity = 1 << 16, used = 0;
    uint8_t *buffer = malloc(capacity);
    while (buffer != NULL) {
        size_t got = fread(buffer + used, 1, capacity - used, file);
        used += got;
        if (got == 0) break;
        if (used == capacity) {
            uint8_t *grown = realloc(buffer, capacity * 2);
            if (grown == NULL) {
                free(buffer);
                buffer = NULL;
                errno = ENOMEM;
                break;
            }
            buffer = grown;
            capacity *= 2;
        }
    }
    int failed = buffer == NULL || ferror(file);
    int saved_errno = errno;
    fclose(file);
    if (failed) {
        free(buffer);
        errno = saved_errno ? saved_errno : EIO;
        return NULL;
    }
    *length = used;
    return buffer;
}

int32_t hearth_smoke_write_file(const char *path, const uint8_t *bytes, size_t length) {
    FILE *file = fopen(path, "wb");
    if (file == NULL) return -1;
    size_t written = length == 0 ? 0 : fwrite(bytes, 1, length, file);
    int failed = written != length;
    if (fclose(file) != 0) failed = 1;
    return failed ? -1 : 0;
}

void hearth_smoke_free(void *buffer) { free(buffer); }

const char *hearth_smoke_error(void) { return strerror(errno); }

void hearth_smoke_print_error(const char *text) {
    fflush(stdout);
    fprintf(stderr, "%s\n", text);
}

void hearth_smoke_exit(int32_t status) {
    fflush(stdout);
    exit(status);
}
