//! Roles and privileges: `CREATE ROLE | USER`, `ALTER ROLE`, `DROP ROLE`, `GRANT` and
//! `REVOKE` of `SELECT | INSERT | UPDATE | DELETE | ALL` on tables, sources and views (or `ALL
//! TABLES IN SCHEMA`), and `CREATE` on a schema; owners; `SET ROLE`.
//!
//! A session runs as the role it logged in as (`SessionVars::session_user`; `None` is the
//! bootstrap superuser of `--superuser`, and any name unknown here under `--auth trust`), or
//! the one `SET ROLE` chose. [`Database::authorize`](authorize) checks each statement before it
//! runs, against the grants as they are then: a `REVOKE` holds for the next statement of
//! every session. Roles and their grants are durable catalog records (kind `role`); a role's
//! password is kept as its SCRAM-SHA-256 salted password, never as typed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use base64::Engine as _;
use openclaw_engine::ObjectId;

use crate::error::{quote, SqlError, SqlResult, SqlState};

pub(crate) mod api_keys;
pub(crate) mod authorize;
mod ddl;
mod membership;

/// SCRAM-SHA-256's iteration count for role passwords (PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// The pseudo-role every role is a member of (`GRANT ... TO PUBLIC`).
pub(crate) const PUBLIC_ROLE: &str = "public";

/// Most roles a database keeps.
pub const MAX_ROLES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    /// On a schema: creating objects in it.
    Create,
}

impl Privilege {
    pub(crate) const ON_RELATIONS: [Privilege; 4] = [Privilege::Select, Privilege::Insert, Privilege::Update, Privilege::Delete];

    pub fn sql_name(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Create => "CREATE",
        }
    }

    fn from_sql_name(name: &str) -> Option<Self> {
        [Privilege::Select, Privilege::Insert, Privilege::Update, Privilege::Delete, Privilege::Create].into_iter().find(|p| p.sql_name() == name)
    }
}

/// What a grant is on: a relation (by its qualified catalog name) or a schema.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Grantable {
    Relation(String),
    Schema(String),
}

impl Grantable {
    /// How the role record keeps it.
    fn key(&self) -> String {
        match self {
            Grantable::Relation(name) => format!("relation:{name}"),
            Grantable::Schema(name) => format!("schema:{name}"),
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        match key.split_once(':')? {
            ("relation", name) => Some(Grantable::Relation(name.to_string())),
            ("schema", name) => Some(Grantable::Schema(name.to_string())),
            _ => None,
        }
    }
}

/// A role's SCRAM-SHA-256 credentials: `SaltedPassword = PBKDF2-HMAC-SHA256(password, salt,
/// 4096)`, what the server side of the exchange needs.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramVerifier(..)")
    }
}

impl ScramVerifier {
    /// Salts `password` with 16 fresh random bytes. (SASLprep is not applied: a password of
    /// ASCII characters, as psql and the drivers send it, is its own SASLprep form.)
    pub(crate) fn new(password: &str) -> SqlResult<Self> {
        use ring::rand::SecureRandom;
        let mut salt = vec![0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut salt).map_err(|_| SqlError::new(SqlState::Internal, "no random bytes for a salt"))?;
        let mut salted_password = vec![0u8; 32];
        ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, std::num::NonZeroU32::new(SCRAM_ITERATIONS).expect("nonzero"), &salt, password.as_bytes(), &mut salted_password);
        Ok(Self { salt, salted_password })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Role {
    pub id: ObjectId,
    pub name: String,
    pub login: bool,
    pub superuser: bool,
    pub password: Option<ScramVerifier>,
    pub grants: BTreeMap<Grantable, BTreeSet<Privilege>>,
    /// The roles it is a member of (`GRANT group TO role`): it holds their privileges, and
    /// may `SET ROLE` to them.
    pub member_of: BTreeSet<String>,
}

const LOGIN_KEY: &str = "role.login";
const SUPERUSER_KEY: &str = "role.superuser";
const SALT_KEY: &str = "role.scram.salt";
const SALTED_PASSWORD_KEY: &str = "role.scram.salted_password";
const GRANTS_KEY: &str = "role.grants";
/// A JSON array of role names; absent when the role is a member of none.
const MEMBER_OF_KEY: &str = "role.member_of";
/// The key under which an object's record names its owner (absent: the bootstrap superuser).
pub(crate) const OWNER_KEY: &str = "owner";

impl Role {
    /// The record's text: the statement without its password or attributes (those are in
    /// `resolved`).
    pub(crate) fn sql(&self) -> String {
        format!("CREATE ROLE {}", quote(&self.name))
    }

    /// What the catalog record keeps beside the statement (format: these keys, the grants as a
    /// JSON object of `relation:<name>` / `schema:<name>` to privilege names).
    pub(crate) fn resolved(&self) -> BTreeMap<String, String> {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut out = BTreeMap::from([(LOGIN_KEY.to_string(), self.login.to_string()), (SUPERUSER_KEY.to_string(), self.superuser.to_string())]);
        if let Some(v) = &self.password {
            out.insert(SALT_KEY.into(), b64(&v.salt));
            out.insert(SALTED_PASSWORD_KEY.into(), b64(&v.salted_password));
        }
        let grants: serde_json::Map<String, serde_json::Value> =
            self.grants.iter().map(|(on, privileges)| (on.key(), privileges.iter().map(|p| serde_json::Value::from(p.sql_name())).collect())).collect();
        out.insert(GRANTS_KEY.into(), serde_json::Value::Object(grants).to_string());
        if !self.member_of.is_empty() {
            out.insert(MEMBER_OF_KEY.into(), serde_json::Value::from(self.member_of.iter().cloned().collect::<Vec<_>>()).to_string());
        }
        out
    }

    /// A role without attributes, grants or memberships.
    pub(crate) fn named(id: ObjectId, name: &str) -> Self {
        Self { id, name: name.to_string(), login: false, superuser: false, password: None, grants: BTreeMap::new(), member_of: BTreeSet::new() }
    }

    pub(crate) fn from_record(record: &crate::durable::DdlRecord) -> SqlResult<Self> {
        let corrupt = |what: &str| SqlError::new(SqlState::Internal, format!("the catalog record of role {} is corrupt: {what}", quote(&record.name)));
        let flag = |key: &str| record.resolved.get(key).map(|v| v == "true").unwrap_or(false);
        let bytes = |key: &str| record.resolved.get(key).map(|v| base64::engine::general_purpose::STANDARD.decode(v).map_err(|_| corrupt(key))).transpose();
        let password = match (bytes(SALT_KEY)?, bytes(SALTED_PASSWORD_KEY)?) {
            (Some(salt), Some(salted_password)) => Some(ScramVerifier { salt, salted_password }),
            (None, None) => None,
            _ => return Err(corrupt("half a password")),
        };
        let mut grants = BTreeMap::new();
        if let Some(text) = record.resolved.get(GRANTS_KEY) {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|_| corrupt("grants"))?;
            for (key, privileges) in value.as_object().ok_or_else(|| corrupt("grants"))? {
                let on = Grantable::from_key(key).ok_or_else(|| corrupt("grant target"))?;
                let privileges = privileges.as_array().ok_or_else(|| corrupt("grants"))?.iter().map(|p| p.as_str().and_then(Privilege::from_sql_name).ok_or_else(|| corrupt("privilege"))).collect::<SqlResult<_>>()?;
                grants.insert(on, privileges);
            }
        }
        let member_of = match record.resolved.get(MEMBER_OF_KEY) {
            Some(text) => serde_json::from_str::<BTreeSet<String>>(text).map_err(|_| corrupt("memberships"))?,
            None => BTreeSet::new(),
        };
        Ok(Self { id: record.id, name: record.name.clone(), login: flag(LOGIN_KEY), superuser: flag(SUPERUSER_KEY), password, grants, member_of })
    }
}

/// The roles of a database, and the owners of its objects.
#[derive(Default)]
pub struct Roles {
    roles: Mutex<BTreeMap<String, Role>>,
    /// Object → the role that created it; objects the bootstrap superuser created are absent.
    owners: Mutex<BTreeMap<String, String>>,
    /// Where `pg_roles` and `pg_auth_members` read the roles, kept in step by every change.
    described: std::sync::OnceLock<crate::pg_catalog::Relations>,
}

impl Roles {
    pub(crate) fn get(&self, name: &str) -> Option<Role> {
        self.roles.lock().expect("roles lock").get(name).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.roles.lock().expect("roles lock").len()
    }

    pub(crate) fn put(&self, role: Role) {
        self.roles.lock().expect("roles lock").insert(role.name.clone(), role);
        self.describe();
    }

    pub(crate) fn remove(&self, name: &str) -> Option<Role> {
        let removed = self.roles.lock().expect("roles lock").remove(name);
        self.describe();
        removed
    }

    /// Describes the roles in `relations` (`pg_roles`, `pg_auth_members`) from now on.
    pub(crate) fn describe_in(&self, relations: crate::pg_catalog::Relations) {
        let _ = self.described.set(relations);
        self.describe();
    }

    fn describe(&self) {
        let Some(relations) = self.described.get() else { return };
        let roles = self.roles.lock().expect("roles lock");
        let described = roles
            .values()
            .filter(|r| r.name != PUBLIC_ROLE)
            .filter_map(|r| {
                let oid = crate::pg_catalog::object_oid(r.id)?;
                Some(crate::pg_catalog::PgRole { oid, name: r.name.clone(), superuser: r.superuser, login: r.login, member_of: r.member_of.iter().cloned().collect() })
            })
            .collect();
        relations.set_roles(described);
    }

    pub(crate) fn names(&self) -> Vec<Role> {
        self.roles.lock().expect("roles lock").values().cloned().collect()
    }

    /// The SCRAM credentials `name` logs in with, if it may log in with a password.
    pub fn login_verifier(&self, name: &str) -> Option<ScramVerifier> {
        self.roles.lock().expect("roles lock").get(name).filter(|r| r.login).and_then(|r| r.password.clone())
    }

    /// Whether `name` is a role of this database.
    pub fn exists(&self, name: &str) -> bool {
        self.roles.lock().expect("roles lock").contains_key(name)
    }

    pub(crate) fn set_owner(&self, object: &str, role: &str) {
        self.owners.lock().expect("owners lock").insert(object.to_string(), role.to_string());
    }

    pub(crate) fn owner(&self, object: &str) -> Option<String> {
        self.owners.lock().expect("owners lock").get(object).cloned()
    }

    /// Objects `role` owns.
    pub(crate) fn owned_by(&self, role: &str) -> Vec<String> {
        self.owners.lock().expect("owners lock").iter().filter(|(_, r)| *r == role).map(|(o, _)| o.clone()).collect()
    }

    /// Forgets a dropped object: its owner and every grant on it. Returns the roles whose
    /// grants changed (their records are written again).
    pub(crate) fn forget_object(&self, object: &str) -> Vec<Role> {
        self.owners.lock().expect("owners lock").remove(object);
        let on = Grantable::Relation(object.to_string());
        let mut roles = self.roles.lock().expect("roles lock");
        roles.values_mut().filter_map(|r| r.grants.remove(&on).map(|_| r.clone())).collect()
    }

    /// Whether `role` (`None`: the bootstrap superuser) is a superuser.
    pub(crate) fn is_superuser(&self, role: Option<&str>) -> bool {
        match role {
            None => true,
            // A role dropped while its sessions run holds nothing.
            Some(name) => self.roles.lock().expect("roles lock").get(name).is_some_and(|r| r.superuser),
        }
    }

    /// Whether `role` holds `privilege` on `on`: as a superuser, as the owner of a relation,
    /// by a grant to it, to a role it is a member of (directly or through others, as
    /// PostgreSQL's `INHERIT`) or to PUBLIC. A superuser's attribute is not inherited.
    pub(crate) fn holds(&self, role: Option<&str>, on: &Grantable, privilege: Privilege) -> bool {
        let Some(name) = role else { return true };
        if self.is_superuser(role) {
            return true;
        }
        let mut holders = self.memberships(name);
        if let Grantable::Relation(object) = on {
            if self.owner(object).is_some_and(|owner| holders.contains(&owner)) {
                return true;
            }
        }
        holders.insert(PUBLIC_ROLE.to_string());
        let roles = self.roles.lock().expect("roles lock");
        holders.iter().filter_map(|r| roles.get(r)).any(|r| r.grants.get(on).is_some_and(|p| p.contains(&privilege)))
    }

    /// `name` and every role it is a member of, directly or through others.
    pub(crate) fn memberships(&self, name: &str) -> BTreeSet<String> {
        let roles = self.roles.lock().expect("roles lock");
        let mut seen = BTreeSet::from([name.to_string()]);
        let mut next = vec![name.to_string()];
        while let Some(r) = next.pop() {
            for group in roles.get(&r).map(|r| r.member_of.clone()).unwrap_or_default() {
                if seen.insert(group.clone()) {
                    next.push(group);
                }
            }
        }
        seen
    }

    /// Roles that are members of `group`, directly.
    pub(crate) fn members_of(&self, group: &str) -> Vec<Role> {
        self.roles.lock().expect("roles lock").values().filter(|r| r.member_of.contains(group)).cloned().collect()
    }
}

/// `42501 permission denied to <what>`: what only a superuser may do.
pub(crate) fn superuser_only(what: &str) -> SqlError {
    SqlError::new(SqlState::InsufficientPrivilege, format!("permission denied to {what}")).with_detail(format!("only a superuser may {what}"))
}

/// `42501 permission denied for <kind> <name>`, naming the privilege that is missing.
pub(crate) fn denied(role: &str, kind: &str, object: &str, privilege: &str) -> SqlError {
    SqlError::new(SqlState::InsufficientPrivilege, format!("permission denied for {kind} {}", quote(object)))
        .with_detail(format!("role {} lacks the {privilege} privilege on {kind} {}", quote(role), quote(object)))
        .with_hint(match kind {
            "schema" => format!("a superuser can run GRANT {privilege} ON SCHEMA {object} TO {role}"),
            _ => format!("a superuser or the owner can run GRANT {privilege} ON {object} TO {role}"),
        })
}

tokio::task_local! {
    /// The role the running statement runs as (`None`: the bootstrap superuser): the owner of
    /// what it creates.
    static STATEMENT_ROLE: Option<String>;
}

/// Runs `statement` as `role`.
pub(crate) async fn with_role<F: std::future::Future>(role: Option<String>, statement: F) -> F::Output {
    STATEMENT_ROLE.scope(role, statement).await
}

/// The role of the running statement, when it is not the bootstrap superuser.
pub(crate) fn statement_role() -> Option<String> {
    STATEMENT_ROLE.try_with(|r| r.clone()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_records_round_trip_without_the_password() {
        let mut grants = BTreeMap::new();
        grants.insert(Grantable::Relation("public.t".into()), BTreeSet::from([Privilege::Select, Privilege::Delete]));
        grants.insert(Grantable::Schema("public".into()), BTreeSet::from([Privilege::Create]));
        let role = Role { id: 7, name: "alice".into(), login: true, superuser: false, password: Some(ScramVerifier::new("pw-Secret-1").unwrap()), grants, member_of: BTreeSet::from(["readers".to_string()]) };
        let record = crate::durable::DdlRecord { id: 7, kind: crate::parser::ObjectKind::Role, name: "alice".into(), sql: role.sql(), resolved: role.resolved() };
        assert_eq!(Role::from_record(&record).unwrap(), role);
        let stored = format!("{record:?}");
        assert!(!stored.contains("pw-Secret-1"));
        assert_eq!(record.resolved[GRANTS_KEY], r#"{"relation:public.t":["SELECT","DELETE"],"schema:public":["CREATE"]}"#);
        assert_eq!(record.resolved[MEMBER_OF_KEY], r#"["readers"]"#);
        // A record from before memberships reads as a member of none.
        let mut older = record.clone();
        older.resolved.remove(MEMBER_OF_KEY);
        assert!(Role::from_record(&older).unwrap().member_of.is_empty());
    }

    /// RFC 7677's test vector: the salted password for "pencil" with its salt and 4096
    /// iterations, which the client computes too.
    #[test]
    fn salted_password_is_scram_sha_256s() {
        let salt = base64::engine::general_purpose::STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let mut out = [0u8; 32];
        ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, std::num::NonZeroU32::new(SCRAM_ITERATIONS).unwrap(), &salt, b"pencil", &mut out);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "c4a49510323ab4f952cac1fa99441939e78ea74d6be81ddf7096e87513dc615d");
    }

    #[test]
    fn grants_owners_and_public() {
        let roles = Roles::default();
        let t = Grantable::Relation("public.t".into());
        roles.put(Role { login: true, ..Role::named(1, "a") });
        roles.put(Role { login: true, superuser: true, ..Role::named(2, "boss") });
        assert!(!roles.holds(Some("a"), &t, Privilege::Select));
        assert!(roles.holds(Some("boss"), &t, Privilege::Select) && roles.holds(None, &t, Privilege::Select));
        roles.set_owner("public.t", "a");
        assert!(roles.holds(Some("a"), &t, Privilege::Delete));
        roles.forget_object("public.t");
        assert!(!roles.holds(Some("a"), &t, Privilege::Delete));
        roles.put(Role { grants: BTreeMap::from([(t.clone(), BTreeSet::from([Privilege::Select]))]), ..Role::named(3, PUBLIC_ROLE) });
        assert!(roles.holds(Some("a"), &t, Privilege::Select) && !roles.holds(Some("a"), &t, Privilege::Insert));
    }

    /// A member holds its groups' grants, through groups of groups, and what they own; not
    /// their superuser attribute.
    #[test]
    fn members_hold_what_their_groups_hold() {
        let roles = Roles::default();
        let t = Grantable::Relation("public.t".into());
        roles.put(Role { grants: BTreeMap::from([(t.clone(), BTreeSet::from([Privilege::Insert]))]), ..Role::named(1, "writers") });
        roles.put(Role { member_of: BTreeSet::from(["writers".to_string()]), ..Role::named(2, "team") });
        roles.put(Role { member_of: BTreeSet::from(["team".to_string()]), ..Role::named(3, "a") });
        roles.put(Role { superuser: true, ..Role::named(4, "admins") });
        assert!(roles.holds(Some("a"), &t, Privilege::Insert));
        assert!(!roles.holds(Some("a"), &t, Privilege::Delete));
        assert_eq!(roles.memberships("a"), BTreeSet::from(["a".to_string(), "team".to_string(), "writers".to_string()]));
        roles.set_owner("public.u", "team");
        assert!(roles.holds(Some("a"), &Grantable::Relation("public.u".into()), Privilege::Delete));
        roles.put(Role { member_of: BTreeSet::from(["admins".to_string()]), ..Role::named(5, "b") });
        assert!(!roles.is_superuser(Some("b")) && !roles.holds(Some("b"), &t, Privilege::Select));
        assert_eq!(roles.members_of("team").iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a"]);
    }
}
