/// Typed shims over libcurl's C variadics (`curl_easy_setopt`, `curl_easy_getinfo`), which
/// Swift cannot call directly: one function per argument type, as curl's own docs classify
/// every option (long, string, pointer, off_t, callback).
#ifndef HEARTH_CURL_SHIMS_H
#define HEARTH_CURL_SHIMS_H
#include <curl/curl.h>

static inline CURLcode hearth_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode hearth_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode hearth_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode hearth_curl_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode hearth_curl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}
/// The write/read/header callback signature (`CURLOPT_WRITEFUNCTION`, `CURLOPT_READFUNCTION`, ...).
typedef size_t (*hearth_curl_io_callback)(char *buffer, size_t size, size_t count, void *context);
static inline CURLcode hearth_curl_setopt_io_callback(CURL *handle, CURLoption option, hearth_curl_io_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode hearth_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode hearth_curl_getinfo_double(CURL *handle, CURLINFO info, double *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode hearth_curl_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}
#endif
