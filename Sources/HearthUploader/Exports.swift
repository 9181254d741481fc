// The HTTP types (`CurlClient`, `HTTPRequest`, `HTTPResponse`, `CurlCode`, `UploaderError`)
// live in HearthHTTP, which links nothing; they stay part of this module's API.
@_exported import HearthHTTP
