//! The command-line reference in `docs/cli/`, generated from the clap definitions so that
//! it cannot drift from what the binaries accept.
//!
//! Each binary has a test that renders its reference and compares it with the committed
//! file; `AURAE_UPDATE_DOCS=1` makes that test write the file instead. The text is what
//! `--help` prints, command by command, with environment values hidden so that it is the
//! same on every machine.

use std::path::Path;

/// The reference of `command` and all its subcommands, as Markdown.
pub fn markdown(command: clap::Command) -> String {
    let mut command = command.disable_colored_help(true);
    command.build();
    let mut out = format!(
        "# `{}` command reference\n\nGenerated from the clap definitions; a test keeps it current \
         (`AURAE_UPDATE_DOCS=1 scripts/test` rewrites it).\n",
        command.get_name()
    );
    section(&mut out, command, "");
    out
}

fn section(out: &mut String, command: clap::Command, parent: &str) {
    let name = if parent.is_empty() {
        command.get_name().to_owned()
    } else {
        format!("{parent} {}", command.get_name())
    };
    let mut command = hide_env_values(command);
    let help = command.render_long_help().to_string();
    out.push_str(&format!(
        "\n## `{name}`\n\n```text\n{}\n```\n",
        help.trim_end()
    ));
    for sub in command.get_subcommands().cloned().collect::<Vec<_>>() {
        if sub.get_name() != "help" && !sub.is_hide_set() {
            section(out, sub, &name);
        }
    }
}

fn hide_env_values(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| arg.hide_env_values(true))
}

/// Compares `markdown` with the committed `file`, or writes it when `AURAE_UPDATE_DOCS` is
/// set; the error says how to bring the file up to date.
pub fn check_or_update(file: &Path, markdown: &str) -> Result<(), String> {
    if std::env::var_os("AURAE_UPDATE_DOCS").is_some() {
        return std::fs::write(file, markdown).map_err(|e| format!("{}: {e}", file.display()));
    }
    let committed = std::fs::read_to_string(file).unwrap_or_default();
    if committed == markdown {
        Ok(())
    } else {
        Err(format!(
            "{} is stale: the command line changed. Run `AURAE_UPDATE_DOCS=1 scripts/test` \
             (or cargo nextest with that variable) and commit the file",
            file.display()
        ))
    }
}
