//! `knockoff keys`: create, list and revoke API keys (the commands the command line hands over).

use std::path::Path;

use anyhow::{bail, Result};
use clap::Subcommand;

use super::db;
use super::keys::{self, Role};

const CREATE_HELP: &str = "\
The key is printed once on standard output; only its hash is stored (DATA/server.sqlite).
Roles: brand (its own brand's products, matches and decisions; needs --brand), marketplace (submits
listings, reads the verdicts of its submissions), analyst (reviews all brands, or one with --brand),
admin (everything).
Examples:
  knockoff keys create --role brand --brand Acme
  knockoff keys create --role analyst --name 'review team'
  knockoff keys revoke 3f9a1c0b2d4e";

/// `knockoff keys` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Create a key and print it once.
    #[command(after_help = CREATE_HELP)]
    Create {
        /// brand, marketplace, analyst or admin.
        #[arg(long)]
        role: String,
        /// The brand a brand key (or an analyst key) is limited to.
        #[arg(long)]
        brand: Option<String>,
        /// A note saying whose key it is.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (ids, roles, brands; never the keys).
    List {
        /// JSON Lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id (from `keys list`).
        id: String,
    },
}

/// Runs a `keys` subcommand on the server database in `data`.
pub fn keys_cmd(data: &Path, cmd: &KeysCmd) -> Result<i32> {
    let conn = db::open(data)?;
    match cmd {
        KeysCmd::Create { role, brand, name } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let k = keys::create(&conn, role, brand.as_deref(), name.as_deref())?;
            println!("{}", k.key);
            eprintln!(
                "created {role} key {}{}; it is shown only now",
                k.id,
                brand.as_deref().map(|b| format!(" for brand {b}")).unwrap_or_default()
            );
            Ok(0)
        }
        KeysCmd::List { json } => {
            let all = keys::list(&conn)?;
            if *json {
                for k in &all {
                    println!("{}", serde_json::to_string(k)?);
                }
            } else {
                let mut rows = vec![["ID", "ROLE", "BRAND", "NAME", "CREATED", "REVOKED"]
                    .map(String::from)
                    .to_vec()];
                for k in &all {
                    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                    rows.push(vec![
                        k.id.clone(),
                        k.role.to_string(),
                        opt(&k.brand),
                        opt(&k.name),
                        k.created_at.clone(),
                        opt(&k.revoked_at),
                    ]);
                }
                print!("{}", crate::scan::report::table(&rows));
            }
            Ok(0)
        }
        KeysCmd::Revoke { id } => {
            if !keys::revoke(&conn, id)? {
                bail!("no live key with id {id:?} (see `knockoff keys list`)");
            }
            eprintln!("revoked key {id}");
            Ok(0)
        }
    }
}
