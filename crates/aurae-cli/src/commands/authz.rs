//! `aurae role`, `aurae grant`, `aurae ungrant`, `aurae grants` and `aurae whoami`: who may
//! do what on the node, through the `aurae.v0.Authz` service. This module only turns flags
//! into calls and prints the answers; it never decides what a pattern, a scope or a
//! permission may be: auraed validates them and says why it refuses.

use aurae_client::AuraeClient;
use aurae_client::Channel;
use aurae_proto::v0 as pb;
use aurae_proto::v0::authz_client::AuthzClient;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::rpc_error;
use crate::cli::ConnectArgs;
use crate::output::shell_quote;

/// `aurae role`: named sets of scoped permissions.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create a role from permissions, or with --replace give an existing role new ones.
    ///
    /// A role does nothing until it is granted: `aurae grant PATTERN ROLE`. A change to a
    /// role applies at once to every principal it is granted to.
    Create {
        /// The role's name.
        name: String,
        /// A permission the role holds, written PERMISSION[:SCOPE]; repeat for more. The
        /// scope is a store path prefix (`/services/`) or `volume:NAME` for storage.*, a
        /// cell name or `prefix*` for runtime.*; no scope means everywhere. `aurae role
        /// permissions` lists them.
        #[arg(long, required = true, value_name = "PERM[:SCOPE]", value_parser = parse_allow)]
        allow: Vec<pb::ScopedPermission>,
        /// Replace the permissions of the role if it exists already (built-in roles cannot
        /// be changed); without it, an existing role is a conflict.
        #[arg(long)]
        replace: bool,
    },
    /// List the roles, built-in and created, with their permissions.
    #[command(visible_alias = "list")]
    Ls {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show a role: its permissions, whether it is built in, and whom it is granted to.
    Show {
        /// The role's name.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Delete a role. Only a role granted to nobody can be deleted (see `aurae ungrant`);
    /// built-in roles cannot.
    Rm {
        /// The role's name.
        name: String,
    },
    /// List every permission the node's capabilities declare, with what its scope is.
    Permissions {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `aurae grant` and `aurae ungrant`: a role and whom it is for.
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// Whom: `<entity>@<peer>@<domain>` for one principal, or `*@<peer>@<domain>` for every
    /// principal of a node (see `aurae whoami` for your own).
    pub pattern: String,
    /// The role, as `aurae role ls` shows it.
    pub role: String,
}

/// `aurae grants`.
#[derive(Debug, Args)]
pub struct GrantsArgs {
    /// Only the bindings of this principal pattern; all bindings without it.
    pub pattern: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Runs an `aurae role` command.
pub async fn role(connect: &ConnectArgs, command: RoleCommand) -> anyhow::Result<()> {
    let mut authz = client(connect).await?;
    match command {
        RoleCommand::Create {
            name,
            allow,
            replace,
        } => {
            let request = pb::CreateRoleRequest {
                name,
                permissions: allow,
                replace,
            };
            let role = authz
                .create_role(request)
                .await
                .map_err(rpc_error)?
                .into_inner();
            print!("{}", role_text(&role));
        }
        RoleCommand::Ls { json } => {
            let roles = authz
                .list_roles(pb::ListRolesRequest {})
                .await
                .map_err(rpc_error)?
                .into_inner()
                .roles;
            if json {
                let rows: Vec<_> = roles.iter().map(RoleView::from).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", roles_table(&roles));
            }
        }
        RoleCommand::Show { name, json } => {
            let role = authz
                .get_role(pb::GetRoleRequest { name })
                .await
                .map_err(rpc_error)?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string_pretty(&RoleView::from(&role))?);
            } else {
                print!("{}", role_text(&role));
            }
        }
        RoleCommand::Rm { name } => {
            authz
                .delete_role(pb::DeleteRoleRequest { name: name.clone() })
                .await
                .map_err(rpc_error)?;
            println!("deleted role {}", shell_quote(&name));
        }
        RoleCommand::Permissions { json } => {
            let permissions = authz
                .permissions(pb::PermissionsRequest {})
                .await
                .map_err(rpc_error)?
                .into_inner()
                .permissions;
            if json {
                let rows: Vec<_> = permissions.iter().map(PermissionView::from).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", permissions_table(&permissions));
            }
        }
    }
    Ok(())
}

/// Runs `aurae grant`.
pub async fn grant(connect: &ConnectArgs, args: GrantArgs) -> anyhow::Result<()> {
    let binding = client(connect)
        .await?
        .grant(pb::GrantRequest {
            pattern: args.pattern,
            role: args.role,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    println!(
        "granted {} to {}",
        shell_quote(&binding.role),
        shell_quote(&binding.pattern)
    );
    Ok(())
}

/// Runs `aurae ungrant`.
pub async fn ungrant(connect: &ConnectArgs, args: GrantArgs) -> anyhow::Result<()> {
    client(connect)
        .await?
        .ungrant(pb::UngrantRequest {
            pattern: args.pattern.clone(),
            role: args.role.clone(),
        })
        .await
        .map_err(rpc_error)?;
    println!(
        "took {} from {}",
        shell_quote(&args.role),
        shell_quote(&args.pattern)
    );
    Ok(())
}

/// Runs `aurae grants`.
pub async fn grants(connect: &ConnectArgs, args: GrantsArgs) -> anyhow::Result<()> {
    let bindings = client(connect)
        .await?
        .list_bindings(pb::ListBindingsRequest {
            pattern: args.pattern.unwrap_or_default(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .bindings;
    if args.json {
        let rows: Vec<_> = bindings.iter().map(BindingView::from).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", bindings_table(&bindings));
    }
    Ok(())
}

/// Runs `aurae whoami`.
pub async fn whoami(connect: &ConnectArgs, json: bool) -> anyhow::Result<()> {
    let me = client(connect)
        .await?
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner();
    if json {
        println!("{}", serde_json::to_string_pretty(&WhoAmIView::from(&me))?);
    } else {
        print!("{}", whoami_text(&me));
    }
    Ok(())
}

async fn client(connect: &ConnectArgs) -> anyhow::Result<AuthzClient<Channel>> {
    Ok(AuraeClient::connect(&connect.options().resolve()?)
        .await?
        .authz())
}

/// Splits `PERMISSION[:SCOPE]` at its first ':', so that a scope may hold ':' itself
/// (`storage.write:volume:data`). Only an empty permission is refused here: which
/// permissions and scopes exist is auraed's to say.
fn parse_allow(text: &str) -> Result<pb::ScopedPermission, String> {
    let (permission, scope) = text.split_once(':').unwrap_or((text, ""));
    if permission.is_empty() {
        return Err(format!(
            "`{text}` names no permission before its scope; write PERMISSION[:SCOPE], e.g. \
             storage.read:/services/ (`aurae role permissions` lists them)"
        ));
    }
    Ok(pb::ScopedPermission {
        permission: permission.to_owned(),
        scope: scope.to_owned(),
    })
}

/// A permission as it is written on the command line: `permission:scope`, or the
/// permission alone when its scope is everywhere.
fn written(p: &pb::ScopedPermission) -> String {
    if p.scope.is_empty() {
        p.permission.clone()
    } else {
        format!("{}:{}", p.permission, p.scope)
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// `rows` under `header` in columns as wide as their widest cell, two spaces apart; the
/// last column is not padded, so that no line ends in blanks.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

/// Labels and values, the values lined up.
fn fields<const N: usize>(pairs: [(&str, String); N]) -> String {
    let width = pairs
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(label, value)| format!("{label:<width$}  {value}\n"))
        .collect()
}

/// One permission per line under a heading, or `(none)`.
fn permission_lines(permissions: &[pb::ScopedPermission]) -> String {
    let mut out = String::from("PERMISSIONS\n");
    if permissions.is_empty() {
        out.push_str("(none)\n");
    }
    for p in permissions {
        out.push_str(&shell_quote(&written(p)));
        out.push('\n');
    }
    out
}

fn role_text(role: &pb::RoleInfo) -> String {
    let bound_to = if role.bound_to.is_empty() {
        "-".to_owned()
    } else {
        let patterns: Vec<_> = role.bound_to.iter().map(|p| shell_quote(p)).collect();
        patterns.join(", ")
    };
    let head = fields([
        ("name", shell_quote(&role.name).into_owned()),
        ("builtin", yes_no(role.builtin).to_owned()),
        ("bound to", bound_to),
    ]);
    format!("{head}\n{}", permission_lines(&role.permissions))
}

fn roles_table(roles: &[pb::RoleInfo]) -> String {
    let rows: Vec<_> = roles
        .iter()
        .map(|r| {
            let permissions: Vec<_> = r
                .permissions
                .iter()
                .map(|p| shell_quote(&written(p)).into_owned())
                .collect();
            [
                shell_quote(&r.name).into_owned(),
                yes_no(r.builtin).to_owned(),
                r.bound_to.len().to_string(),
                permissions.join(", "),
            ]
        })
        .collect();
    table(["NAME", "BUILTIN", "BINDINGS", "PERMISSIONS"], &rows)
}

fn permissions_table(permissions: &[pb::PermissionInfo]) -> String {
    let rows: Vec<_> = permissions
        .iter()
        .map(|p| {
            let scope = if p.scope_kind.is_empty() {
                "-"
            } else {
                &p.scope_kind
            };
            [
                p.name.clone(),
                scope.to_owned(),
                yes_no(p.read_only).to_owned(),
                p.capability.clone(),
                p.description.clone(),
            ]
        })
        .collect();
    table(
        [
            "PERMISSION",
            "SCOPE",
            "READ-ONLY",
            "CAPABILITY",
            "DESCRIPTION",
        ],
        &rows,
    )
}

fn bindings_table(bindings: &[pb::Binding]) -> String {
    let rows: Vec<_> = bindings
        .iter()
        .map(|b| {
            [
                shell_quote(&b.pattern).into_owned(),
                shell_quote(&b.role).into_owned(),
                yes_no(b.builtin).to_owned(),
            ]
        })
        .collect();
    table(["PATTERN", "ROLE", "BUILTIN"], &rows)
}

fn whoami_text(me: &pb::WhoAmIResponse) -> String {
    let head = fields([
        ("principal", shell_quote(&me.principal).into_owned()),
        ("node admin", yes_no(me.node_admin).to_owned()),
    ]);
    format!(
        "{head}\n{}\n{}",
        bindings_table(&me.bindings),
        permission_lines(&me.permissions)
    )
}

/// A permission and its scope in `--json` output; an empty scope is everywhere.
#[derive(Debug, Serialize)]
struct ScopedView<'a> {
    permission: &'a str,
    scope: &'a str,
}

impl<'a> From<&'a pb::ScopedPermission> for ScopedView<'a> {
    fn from(p: &'a pb::ScopedPermission) -> Self {
        Self {
            permission: &p.permission,
            scope: &p.scope,
        }
    }
}

/// A role in `--json` output.
#[derive(Debug, Serialize)]
struct RoleView<'a> {
    name: &'a str,
    builtin: bool,
    permissions: Vec<ScopedView<'a>>,
    bound_to: &'a [String],
}

impl<'a> From<&'a pb::RoleInfo> for RoleView<'a> {
    fn from(role: &'a pb::RoleInfo) -> Self {
        Self {
            name: &role.name,
            builtin: role.builtin,
            permissions: role.permissions.iter().map(ScopedView::from).collect(),
            bound_to: &role.bound_to,
        }
    }
}

/// A binding (a role granted to a principal pattern) in `--json` output.
#[derive(Debug, Serialize)]
struct BindingView<'a> {
    pattern: &'a str,
    role: &'a str,
    builtin: bool,
}

impl<'a> From<&'a pb::Binding> for BindingView<'a> {
    fn from(b: &'a pb::Binding) -> Self {
        Self {
            pattern: &b.pattern,
            role: &b.role,
            builtin: b.builtin,
        }
    }
}

/// A permission a capability declares, in `--json` output.
#[derive(Debug, Serialize)]
struct PermissionView<'a> {
    name: &'a str,
    scope_kind: &'a str,
    read_only: bool,
    capability: &'a str,
    description: &'a str,
}

impl<'a> From<&'a pb::PermissionInfo> for PermissionView<'a> {
    fn from(p: &'a pb::PermissionInfo) -> Self {
        Self {
            name: &p.name,
            scope_kind: &p.scope_kind,
            read_only: p.read_only,
            capability: &p.capability,
            description: &p.description,
        }
    }
}

/// The caller as auraed sees it, in `--json` output.
#[derive(Debug, Serialize)]
struct WhoAmIView<'a> {
    principal: &'a str,
    node_admin: bool,
    bindings: Vec<BindingView<'a>>,
    permissions: Vec<ScopedView<'a>>,
}

impl<'a> From<&'a pb::WhoAmIResponse> for WhoAmIView<'a> {
    fn from(me: &'a pb::WhoAmIResponse) -> Self {
        Self {
            principal: &me.principal,
            node_admin: me.node_admin,
            bindings: me.bindings.iter().map(BindingView::from).collect(),
            permissions: me.permissions.iter().map(ScopedView::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;
    use crate::commands::Command;

    fn allow(text: &str) -> (String, String) {
        let p = parse_allow(text).unwrap();
        (p.permission, p.scope)
    }

    fn pair(permission: &str, scope: &str) -> (String, String) {
        (permission.to_owned(), scope.to_owned())
    }

    #[test]
    fn a_permission_is_split_from_its_scope_at_the_first_colon() {
        assert_eq!(
            allow("storage.read:/services/"),
            pair("storage.read", "/services/")
        );
        assert_eq!(
            allow("storage.write:volume:data"),
            pair("storage.write", "volume:data")
        );
        assert_eq!(allow("runtime.exec:web-*"), pair("runtime.exec", "web-*"));
        assert_eq!(allow("system.read"), pair("system.read", ""));
        assert_eq!(allow("system.read:"), pair("system.read", ""));
    }

    #[test]
    fn a_scope_without_a_permission_is_refused() {
        for text in ["", ":/services/", ":"] {
            let error = parse_allow(text).unwrap_err();
            assert!(error.contains("aurae role permissions"), "{error}");
        }
    }

    #[test]
    fn written_permissions_read_back_the_same() {
        for text in ["storage.write:volume:data", "system.read"] {
            assert_eq!(written(&parse_allow(text).unwrap()), text);
        }
    }

    #[test]
    fn role_create_needs_an_allow_and_keeps_them_in_order() {
        let parse =
            |args: &[&str]| Cli::try_parse_from(["aurae", "role", "create"].iter().chain(args));
        assert!(parse(&["ops"]).is_err());
        let cli = parse(&[
            "ops",
            "--allow",
            "storage.read:/services/",
            "--allow",
            "system.read",
            "--replace",
        ])
        .unwrap();
        let Command::Role(RoleCommand::Create {
            name,
            allow,
            replace,
        }) = cli.command
        else {
            panic!("not role create: {:?}", cli.command);
        };
        assert_eq!(name, "ops");
        assert!(replace);
        let allowed: Vec<_> = allow.iter().map(written).collect();
        assert_eq!(allowed, ["storage.read:/services/", "system.read"]);
    }

    #[test]
    fn tables_line_up_and_end_without_blanks() {
        let bindings = [
            pb::Binding {
                pattern: "*@node1@example.org".to_owned(),
                role: "viewer".to_owned(),
                builtin: false,
            },
            pb::Binding {
                pattern: "admin@node1@example.org".to_owned(),
                role: "admin".to_owned(),
                builtin: true,
            },
        ];
        let text = bindings_table(&bindings);
        assert_eq!(
            text,
            "PATTERN                  ROLE    BUILTIN\n\
             *@node1@example.org      viewer  no\n\
             admin@node1@example.org  admin   yes\n"
        );
    }
}
