//! `docs/cli/auraed.md` is what `auraed --help` says: regenerate it with
//! `AURAE_UPDATE_DOCS=1` when the flags change.

use clap::CommandFactory;

#[test]
fn the_cli_reference_in_docs_is_current() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli/auraed.md");
    let markdown = aurae_client::reference::markdown(auraed::cli::Args::command());
    if let Err(stale) = aurae_client::reference::check_or_update(&file, &markdown) {
        panic!("{stale}");
    }
}
