//! How `refnet serve` tells whoever started it where it listens: the first
//! line on standard error, which the load tool and the tests read when they
//! start a server on port 0.

/// The start of the announcement line, e.g. `refnet serving on 127.0.0.1:50051 (data in ...)`.
pub const SERVING: &str = "refnet serving on";

/// The start of the web desk's announcement line, e.g. `refnet web desk on http://127.0.0.1:8080`.
pub const WEB: &str = "refnet web desk on";

/// The web desk's URL in its announcement line, if `line` is it.
pub fn web_address(line: &str) -> Option<&str> {
    line.strip_prefix(WEB)?.split_whitespace().next()
}

/// The address in `refnet serve`'s announcement line, if `line` is it.
pub fn served_address(line: &str) -> Option<&str> {
    line.strip_prefix(SERVING)?.split_whitespace().next()
}
