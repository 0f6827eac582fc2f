//! How a refnet binary ends: `main` returns [`code`] of its result, so a
//! failure prints as `Error: message` with its causes and, for a refused
//! call, one line per field violation, never a backtrace (anyhow's `Debug`
//! form, which `fn main() -> anyhow::Result<()>` prints, appends one whenever
//! `RUST_BACKTRACE` is set, as it often is on developer machines). A panic is
//! not an error value: it still reports through the panic hook as usual.

use std::{fmt::Write as _, process::ExitCode};

/// The text printed for a failure: `Error: ` and the error, then its causes.
pub fn report(error: &anyhow::Error) -> String {
    let mut text = format!("Error: {error}");
    let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
    if !causes.is_empty() {
        text.push_str("\n\nCaused by:");
        for cause in causes {
            let _ = write!(text, "\n    {cause}");
        }
    }
    text
}

/// Prints a failure's [`report`] on standard error; the exit status is 1 on
/// failure and 0 on success.
pub fn code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", report(&error));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn the_report_has_the_message_and_causes_and_no_backtrace() {
        let error = Err::<(), _>(std::io::Error::other("disk full"))
            .context("cannot write refnet-data/master.key")
            .unwrap_err();
        assert_eq!(
            report(&error),
            "Error: cannot write refnet-data/master.key\n\nCaused by:\n    disk full"
        );
        let plain = anyhow::anyhow!("INVALID_ARGUMENT: bad\n  draft.county: unknown");
        assert_eq!(
            report(&plain),
            "Error: INVALID_ARGUMENT: bad\n  draft.county: unknown"
        );
    }
}
