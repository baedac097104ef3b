//! The manual pages of `aurae`, `auraed` and `auraefs`, rendered with clap_mangen from
//! the same clap definitions the binaries parse, so that they cannot drift from what the
//! binaries accept.
//!
//! The pages are committed in `packaging/man/` and shipped by the Debian package. Each
//! binary has a test that renders its pages and compares them with the committed files
//! (one per command and one per subcommand, `aurae-kv-get.1` for `aurae kv get`);
//! `AURAE_UPDATE_DOCS=1` makes that test write them instead, as it does for `docs/cli/`.
//! This crate is a dev-dependency only: no binary carries a man-page generator.
#![deny(missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where the committed pages live, relative to the workspace root.
pub const DIR: &str = "packaging/man";

/// The manual section of a binary's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// 1: user commands (`aurae`, `auraefs`).
    UserCommands,
    /// 8: system administration and daemons (`auraed`).
    Administration,
}

impl Section {
    fn number(self) -> &'static str {
        match self {
            Self::UserCommands => "1",
            Self::Administration => "8",
        }
    }
}

/// One rendered page: its file name (`aurae-kv.1`) and its roff text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManPage {
    /// The file name, `<command>[-<subcommand>...].<section>`.
    pub file_name: String,
    /// The page in roff.
    pub roff: String,
}

/// The pages of `command` and of every visible subcommand, recursively (`help` excluded),
/// in `section`. Environment variables are named, never their values on this machine.
pub fn render(command: clap::Command, section: Section) -> Vec<ManPage> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    // Every page names the program and version it documents ("aurae 0.1.0"), also for a
    // subcommand, which has no version of its own.
    let source = format!(
        "{} {}",
        command.get_name(),
        command.get_version().unwrap_or_default()
    );
    let mut pages = Vec::new();
    collect(command, section, source.trim(), &mut pages);
    pages.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    pages
}

fn collect(command: clap::Command, section: Section, source: &str, pages: &mut Vec<ManPage>) {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub.clone(), section, source, pages);
    }
    let command = command.mut_args(|arg| arg.hide_env_values(true));
    let man = clap_mangen::Man::new(command)
        .section(section.number())
        .source(source)
        .manual("Aurae");
    let mut roff = Vec::new();
    // Writing into a Vec cannot fail; the text is built from UTF-8 strings.
    if man.render(&mut roff).is_ok() {
        pages.push(ManPage {
            file_name: man.get_filename(),
            roff: String::from_utf8_lossy(&roff).into_owned(),
        });
    }
}

/// The committed pages directory of the workspace that holds `manifest_dir` (a crate's
/// `CARGO_MANIFEST_DIR`).
pub fn committed_dir(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir).join("../..").join(DIR)
}

/// Compares the pages of `binary` with those committed in `dir`, or writes them (and
/// removes pages of subcommands that no longer exist) when `AURAE_UPDATE_DOCS` is set.
/// A page belongs to `binary` when its name is `<binary>.<n>` or `<binary>-*.<n>`; the
/// error lists every stale, missing or orphaned page and says how to bring them up to date.
pub fn check_or_update(dir: &Path, binary: &str, pages: &[ManPage]) -> Result<(), String> {
    let action = if std::env::var_os("AURAE_UPDATE_DOCS").is_some() {
        Action::Update
    } else {
        Action::Check
    };
    apply(dir, binary, pages, action)
}

/// What [`check_or_update`] does with the committed pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Check,
    Update,
}

fn apply(dir: &Path, binary: &str, pages: &[ManPage], action: Action) -> Result<(), String> {
    let committed = committed_pages(dir, binary)?;
    let rendered: BTreeSet<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
    let orphans: Vec<&String> = committed
        .iter()
        .filter(|name| !rendered.contains(name.as_str()))
        .collect();
    if action == Action::Update {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for orphan in orphans {
            let path = dir.join(orphan);
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        for page in pages {
            let path = dir.join(&page.file_name);
            std::fs::write(&path, &page.roff).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        return Ok(());
    }
    let mut problems: Vec<String> = orphans
        .into_iter()
        .map(|name| format!("{name} (no such command any more)"))
        .collect();
    for page in pages {
        match std::fs::read_to_string(dir.join(&page.file_name)) {
            Ok(text) if text == page.roff => {}
            Ok(_) => problems.push(format!("{} (stale)", page.file_name)),
            Err(_) => problems.push(format!("{} (missing)", page.file_name)),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the man pages of {binary} in {} are not current: {}. Run \
             `AURAE_UPDATE_DOCS=1 scripts/test` (or cargo nextest with that variable) and \
             commit the files",
            dir.display(),
            problems.join(", ")
        ))
    }
}

/// The names of the committed pages of `binary`; an absent directory has none.
fn committed_pages(dir: &Path, binary: &str) -> Result<BTreeSet<String>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if belongs_to(&name, binary) {
            names.insert(name);
        }
    }
    Ok(names)
}

fn belongs_to(file_name: &str, binary: &str) -> bool {
    let Some((stem, section)) = file_name.rsplit_once('.') else {
        return false;
    };
    !section.is_empty()
        && section.bytes().all(|b| b.is_ascii_digit())
        && (stem == binary || stem.starts_with(&format!("{binary}-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> clap::Command {
        clap::Command::new("tool")
            .version("1.2.3")
            .about("Does things.")
            .arg(clap::Arg::new("sock").long("sock").env("TOOL_SOCKET"))
            .subcommand(
                clap::Command::new("kv")
                    .about("Keys.")
                    .subcommand(clap::Command::new("get").about("Reads a key.")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn every_visible_subcommand_has_a_page_and_help_has_none() {
        let names: Vec<String> = render(tool(), Section::UserCommands)
            .into_iter()
            .map(|p| p.file_name)
            .collect();
        assert_eq!(names, ["tool-kv-get.1", "tool-kv.1", "tool.1"]);
    }

    #[test]
    fn a_page_names_the_environment_variable_and_its_section() {
        let pages = render(tool(), Section::Administration);
        let top = pages.iter().find(|p| p.file_name == "tool.8").unwrap();
        assert!(top.roff.starts_with(".ie \\n(.g .ds Aq"), "{}", top.roff);
        assert!(top.roff.contains(".TH tool 8"), "{}", top.roff);
        let sub = pages
            .iter()
            .find(|p| p.file_name == "tool-kv-get.8")
            .unwrap();
        assert!(
            sub.roff
                .contains(r#".TH tool-kv-get 8  "tool 1.2.3" Aurae"#),
            "{}",
            sub.roff
        );
        assert!(top.roff.contains("TOOL_SOCKET"), "{}", top.roff);
    }

    #[test]
    fn pages_of_one_binary_are_told_from_another_with_a_common_prefix() {
        assert!(belongs_to("aurae.1", "aurae"));
        assert!(belongs_to("aurae-kv-get.1", "aurae"));
        assert!(!belongs_to("auraed.8", "aurae"));
        assert!(!belongs_to("auraefs.1", "aurae"));
        assert!(!belongs_to("aurae.md", "aurae"));
    }

    #[test]
    fn update_writes_pages_and_removes_orphans_then_check_passes() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        std::fs::write(dir.join("tool-gone.1"), "old").unwrap();
        std::fs::write(dir.join("other.1"), "kept").unwrap();
        let pages = render(tool(), Section::UserCommands);
        let err = apply(dir, "tool", &pages, Action::Check).unwrap_err();
        assert!(
            err.contains("tool-gone.1 (no such command any more)"),
            "{err}"
        );
        assert!(err.contains("tool.1 (missing)"), "{err}");
        apply(dir, "tool", &pages, Action::Update).unwrap();
        assert!(!dir.join("tool-gone.1").exists());
        assert!(dir.join("other.1").exists());
        apply(dir, "tool", &pages, Action::Check).unwrap();
        std::fs::write(dir.join("tool.1"), "changed").unwrap();
        let err = apply(dir, "tool", &pages, Action::Check).unwrap_err();
        assert!(err.contains("tool.1 (stale)"), "{err}");
    }
}
