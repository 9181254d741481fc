/// The one runtime entry point Embedded Swift needs from the platform that glibc does not
/// provide under this name: parsing a Double from text (`Double("1.5")`). The Swift runtime's
/// own version (`swift/stdlib/public/stubs/Stubs.cpp`) parses in the C locale and returns the
/// position after the parsed number; a process that never calls setlocale is in the C locale,
/// but strtod_l makes it independent of that.
///
/// Linked only into the aarch64 Embedded Swift binaries (cross/build-aarch64.sh); the native
/// build takes it from libswiftCore.
#define _GNU_SOURCE
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void make_c_locale(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

const char *_swift_stdlib_strtod_clocale(const char *nptr, double *outResult) {
    pthread_once(&c_locale_once, make_c_locale);
    char *end = (char *)nptr;
    *outResult = c_locale != (locale_t)0 ? strtod_l(nptr, &end, c_locale) : strtod(nptr, &end);
    return end;
}
