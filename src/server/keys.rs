//! API keys: random secrets drawn from the OS RNG, shown once; only their SHA-256 is stored (the
//! keys carry 256 bits of entropy, so a fast hash is enough), and a presented key's hash is
//! compared with the stored one in constant time.
//!
//! A key reads `ko_ID_SECRET`: `ID` (12 hex digits) names the row, `SECRET` is 64 hex digits.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::db;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A brand owner: its own brand's products, matches and decisions.
    Brand,
    /// A marketplace: submits listings, reads the verdicts of its own submissions.
    Marketplace,
    /// A reviewer: verdicts and decisions of all brands, or of one.
    Analyst,
    /// Everything.
    Admin,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Brand => "brand",
            Role::Marketplace => "marketplace",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "brand" => Ok(Role::Brand),
            "marketplace" => Ok(Role::Marketplace),
            "analyst" => Ok(Role::Analyst),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?} (brand, marketplace, analyst or admin)")),
        }
    }
}

/// The holder of a verified key, as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id (never the key).
    pub key_id: String,
    /// Its role.
    pub role: Role,
    /// The brand it is limited to (brand keys always, analyst keys optionally).
    pub brand: Option<String>,
}

impl Caller {
    /// Whether the caller may see and act on `brand`'s data.
    pub fn sees_brand(&self, brand: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Marketplace => false,
            Role::Brand | Role::Analyst => self.brand.as_deref().is_none_or(|b| b == brand),
        }
    }

    /// Whether the caller sees every brand's data.
    pub fn sees_all_brands(&self) -> bool {
        matches!(self.role, Role::Admin) || (self.role == Role::Analyst && self.brand.is_none())
    }
}

/// A key as `keys list` shows it (never the key itself).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// The key's id.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// The brand it is limited to.
    pub brand: Option<String>,
    /// A note given at creation.
    pub name: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// A newly created key: the only moment the secret exists outside the client.
pub struct NewKey {
    /// The key's id.
    pub id: String,
    /// The whole key, to hand to its holder.
    pub key: String,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a key; brand keys need a brand, marketplace and admin keys take none.
pub fn create(
    conn: &Connection,
    role: Role,
    brand: Option<&str>,
    name: Option<&str>,
) -> Result<NewKey> {
    let brand = brand.map(str::trim).filter(|b| !b.is_empty());
    match (role, brand) {
        (Role::Brand, None) => bail!("a brand key needs --brand"),
        (Role::Marketplace | Role::Admin, Some(_)) => {
            bail!("a {role} key is not limited to a brand; drop --brand")
        }
        _ => {}
    }
    let id = random_hex(6)?;
    let key = format!("ko_{id}_{}", random_hex(32)?);
    conn.execute(
        "INSERT INTO keys(id, hash, role, brand, name, created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, hash(&key), role.as_str(), brand, name, db::now()],
    )
    .context("cannot store the new key")?;
    Ok(NewKey { id, key })
}

/// All keys, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<KeyInfo>> {
    let mut st = conn.prepare(
        "SELECT id, role, brand, name, created_at, revoked_at FROM keys ORDER BY created_at, id",
    )?;
    let rows = st.query_map([], |r| {
        let role: String = r.get(1)?;
        Ok((
            r.get::<_, String>(0)?,
            role,
            r.get(2)?,
            r.get(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<i64>>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, role, brand, name, created, revoked) = row?;
        let role = Role::from_str(&role)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("key {id}"))?;
        out.push(KeyInfo {
            id,
            role,
            brand,
            name,
            created_at: db::rfc3339(created),
            revoked_at: revoked.map(db::rfc3339),
        });
    }
    Ok(out)
}

/// Revokes a key at once (requests with it fail from now on); false when no live key has that id.
pub fn revoke(conn: &Connection, id: &str) -> Result<bool> {
    let n = conn.execute(
        "UPDATE keys SET revoked_at=?2 WHERE id=?1 AND revoked_at IS NULL",
        params![id, db::now()],
    )?;
    Ok(n == 1)
}

/// The live key `presented` belongs to, or None; its hash is compared in constant time.
pub fn verify(conn: &Connection, presented: &str) -> Result<Option<Caller>> {
    let Some(id) =
        presented.strip_prefix("ko_").and_then(|rest| rest.split_once('_')).map(|(id, _)| id)
    else {
        return Ok(None);
    };
    let row: Option<(String, String, Option<String>)> = conn
        .query_row(
            "SELECT hash, role, brand FROM keys WHERE id=?1 AND revoked_at IS NULL",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((stored, role, brand)) = row else {
        return Ok(None);
    };
    if !bool::from(hash(presented).as_bytes().ct_eq(stored.as_bytes())) {
        return Ok(None);
    }
    let role = Role::from_str(&role).map_err(anyhow::Error::msg)?;
    Ok(Some(Caller { key_id: id.to_string(), role, brand }))
}

/// The holder of key `key_id` while the key is not revoked (for sessions of the review console,
/// which keep the key's id, never the key).
pub fn active(conn: &Connection, key_id: &str) -> Result<Option<Caller>> {
    let row: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT role, brand FROM keys WHERE id=?1 AND revoked_at IS NULL",
            [key_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((role, brand)) = row else {
        return Ok(None);
    };
    let role = Role::from_str(&role).map_err(anyhow::Error::msg)?;
    Ok(Some(Caller { key_id: key_id.to_string(), role, brand }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_verify_until_revoked_and_only_hashes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(dir.path()).unwrap();
        let k = create(&conn, Role::Brand, Some("Acme"), None).unwrap();
        let other = create(&conn, Role::Admin, None, Some("ops")).unwrap();
        assert_ne!(k.key, other.key);
        assert!(k.key.starts_with(&format!("ko_{}_", k.id)) && k.key.len() == 3 + 12 + 1 + 64);
        let caller = verify(&conn, &k.key).unwrap().unwrap();
        assert_eq!(
            caller,
            Caller { key_id: k.id.clone(), role: Role::Brand, brand: Some("Acme".into()) }
        );
        // a wrong secret with a right id, a garbled key
        let mut wrong = k.key.clone();
        wrong.replace_range(wrong.len() - 4.., "0000");
        assert!(verify(&conn, &wrong).unwrap().is_none() || wrong == k.key);
        assert!(verify(&conn, "nonsense").unwrap().is_none());
        let stored: String = conn
            .query_row(
                "SELECT group_concat(hash || role || coalesce(brand,'')) FROM keys",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!stored.contains(&k.key[16..]), "the secret is stored");
        assert!(revoke(&conn, &k.id).unwrap());
        assert!(!revoke(&conn, &k.id).unwrap(), "revoked twice");
        assert!(verify(&conn, &k.key).unwrap().is_none());
        let listed = list(&conn).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().any(|i| i.id == k.id && i.revoked_at.is_some()));
    }

    #[test]
    fn roles_and_brands_are_checked_at_creation() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(dir.path()).unwrap();
        assert!(create(&conn, Role::Brand, None, None).is_err());
        assert!(create(&conn, Role::Marketplace, Some("Acme"), None).is_err());
        assert!(create(&conn, Role::Analyst, Some("Acme"), None).is_ok());
        assert!(create(&conn, Role::Analyst, None, None).is_ok());
    }
}
