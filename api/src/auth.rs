//! Bearer tokens with roles. Tokens come from configuration as SHA-256 hashes, never in clear;
//! a presented token is hashed and looked up, so comparing secrets leaks no timing.

use crate::problem::Problem;
use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Operator,
    Auditor,
    Admin,
}

/// What a request needs to be allowed. The README's roles table is checked against
/// [`Role::allows`] by a test, so the documentation and the code cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// SKU state, reservations, low-stock lists, alerts, notifications and projection status.
    Read,
    /// Reserve, and release or confirm the reservations the principal holds.
    Reserve,
    /// Release or confirm any principal's reservation.
    EndAnyReservation,
    /// Replenish, adjust, set reorder points.
    Manage,
    /// Histories (as-of state included), the movement ledger, anchors and inclusion proofs.
    Audit,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::Read,
        Permission::Reserve,
        Permission::EndAnyReservation,
        Permission::Manage,
        Permission::Audit,
    ];
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Client, Role::Operator, Role::Auditor, Role::Admin];

    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "client" => Ok(Self::Client),
            "operator" => Ok(Self::Operator),
            "auditor" => Ok(Self::Auditor),
            "admin" => Ok(Self::Admin),
            // The value is not repeated: a misplaced token must not end up in a log.
            _ => Err(
                "unknown role (the value is not shown); roles are client, operator, \
                      auditor, admin"
                    .to_owned(),
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Self::Admin => true,
            Self::Operator => matches!(permission, Read | Reserve | EndAnyReservation | Manage),
            Self::Client => matches!(permission, Read | Reserve),
            Self::Auditor => matches!(permission, Read | Audit),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

pub struct Authenticator {
    /// SHA-256 of each token → who presents it. Empty: the API runs open.
    tokens: HashMap<[u8; 32], Principal>,
}

pub fn hash_token(token: &str) -> String {
    crate::answer::hex(&Sha256::digest(token.as_bytes()))
}

/// The entry's second field as a hash. The error never repeats the field: an operator who
/// pasted a token itself there must not find it in the logs.
fn parse_hash(hex: &str) -> Result<[u8; 32], String> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the second field ({} characters, not shown) is not a SHA-256 hash (64 hexadecimal \
             digits); hash the token with `ledger-api hash-token`",
            hex.chars().count()
        ));
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex digits");
    }
    Ok(hash)
}

impl Authenticator {
    pub fn open() -> Self {
        Self {
            tokens: HashMap::new(),
        }
    }

    /// Entries are `ROLE:SHA256HEX[:NAME]`, separated by commas or new lines.
    pub fn from_config(inline: Option<&str>, file: Option<&Path>) -> Result<Self, String> {
        let mut text = inline.unwrap_or_default().replace(',', "\n");
        if let Some(file) = file {
            let content = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read tokens file {}: {e}", file.display()))?;
            text.push('\n');
            text.push_str(&content);
        }
        let mut tokens = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.splitn(3, ':');
            let role = Role::parse(parts.next().unwrap_or_default())
                .map_err(|e| format!("token entry {}: {e}", index + 1))?;
            let hash = parse_hash(parts.next().unwrap_or_default())
                .map_err(|e| format!("token entry {}: {e}", index + 1))?;
            let name = parts
                .next()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{}-{}", role.as_str(), index + 1));
            tokens.insert(hash, Principal { name, role });
        }
        Ok(Self { tokens })
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The name of the principal whose valid token `headers` carry, whatever it may do; `None`
    /// without a valid token (the rate limit then keys on the client's address).
    pub fn identify(&self, headers: &HeaderMap) -> Option<&str> {
        let token = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.tokens.get(&hash).map(|p| p.name.as_str())
    }

    pub fn authorize(
        &self,
        headers: &HeaderMap,
        permission: Permission,
    ) -> Result<Principal, Problem> {
        if self.is_open() {
            return Ok(Principal {
                name: "anonymous".into(),
                role: Role::Admin,
            });
        }
        let unauthorized = |detail: &str| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
                detail,
            )
        };
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send `Authorization: Bearer <token>`"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let principal = self
            .tokens
            .get(&hash)
            .ok_or_else(|| unauthorized("the token is not valid"))?;
        if !principal.role.allows(permission) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Not allowed for this role",
                format!(
                    "the {} role may not do this ({permission:?} is needed)",
                    principal.role.as_str()
                ),
            ));
        }
        Ok(principal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_exactly_their_permissions() {
        use Permission::*;
        assert!(Role::Client.allows(Reserve) && !Role::Client.allows(Manage));
        assert!(!Role::Client.allows(Audit));
        assert!(Role::Auditor.allows(Audit) && !Role::Auditor.allows(Reserve));
        assert!(Role::Operator.allows(Manage));
        assert!(Role::Admin.allows(Manage));
    }

    #[test]
    fn token_entries_are_parsed_and_bad_ones_explained() {
        let hash = hash_token("secret");
        let auth = Authenticator::from_config(Some(&format!("operator:{hash}:ops")), None).unwrap();
        assert!(!auth.is_open());
        let error = Authenticator::from_config(Some("operator:abc"), None)
            .err()
            .unwrap();
        assert!(error.contains("SHA-256"), "{error}");
        let error = Authenticator::from_config(Some(&format!("boss:{hash}")), None)
            .err()
            .unwrap();
        assert!(error.contains("unknown role"), "{error}");
    }

    #[test]
    fn a_malformed_entry_is_explained_without_repeating_it() {
        for entry in [
            "operator:my-secret-token-value",
            "my-secret-token-value",
            "client:my-secret-token-value:name",
        ] {
            let error = Authenticator::from_config(Some(entry), None).err().unwrap();
            assert!(!error.contains("my-secret"), "{error}");
            assert!(error.contains("token entry 1"), "{error}");
        }
    }
}
