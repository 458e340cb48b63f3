//! API keys: bearer tokens for the HTTP and gRPC fronts, each tied to a role.
//!
//! `CREATE API KEY FOR ROLE alice` answers the token once: `ock_<id>_<secret>`, the id 16 hex
//! digits, the secret 32 random bytes in unpadded base64url. The catalog keeps the id, the
//! role and SHA-256 of the secret (a record of kind `api key`), never the token. `SHOW API
//! KEYS` lists ids and roles; `DROP API KEY id` revokes one at once; dropping a role drops its
//! keys.

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine as _;
use openclaw_engine::ObjectId;
use ring::rand::SecureRandom;

use crate::database::{Database, QueryOutput};
use crate::durable::DdlRecord;
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::parser::ObjectKind;
use crate::session::SessionVars;

const TOKEN_PREFIX: &str = "ock_";
const ROLE_KEY: &str = "api_key.role";
const HASH_KEY: &str = "api_key.sha256";

/// Most API keys a database keeps.
pub const MAX_API_KEYS: usize = 10_000;

#[derive(Debug, Clone)]
struct ApiKey {
    id: ObjectId,
    role: String,
    secret_sha256: Vec<u8>,
}

/// The API keys of a database, by key id.
#[derive(Default)]
pub(crate) struct ApiKeys(Mutex<BTreeMap<String, ApiKey>>);

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().to_vec()
}

/// Equal without an early exit, so the time taken does not tell how much of a guess matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ApiKeys {
    /// The role `token` stands for, if it is a key of this database.
    pub(crate) fn role_of(&self, token: &str) -> Option<String> {
        let (id, secret) = token.strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
        let keys = self.0.lock().expect("api keys lock");
        let key = keys.get(id)?;
        same(&sha256(secret.as_bytes()), &key.secret_sha256).then(|| key.role.clone())
    }

    pub(crate) fn drop_role(&self, role: &str) -> Vec<ObjectId> {
        let mut keys = self.0.lock().expect("api keys lock");
        let gone: Vec<String> = keys.iter().filter(|(_, k)| k.role == role).map(|(id, _)| id.clone()).collect();
        gone.iter().filter_map(|id| keys.remove(id)).map(|k| k.id).collect()
    }
}

impl Database {
    /// The role an HTTP or gRPC request's bearer token stands for.
    pub fn api_key_role(&self, token: &str) -> Option<String> {
        self.api_keys.role_of(token)
    }

    /// `CREATE API KEY FOR ROLE name`: a superuser's; answers `id` and `key` (shown this once).
    pub(crate) async fn create_api_key(&self, vars: &SessionVars, role: &str) -> SqlResult<QueryOutput> {
        if !self.roles.is_superuser(vars.current_role().as_deref()) {
            return Err(super::superuser_only("create API keys"));
        }
        let mut catalog = self.catalog.lock().await;
        if !self.roles.exists(role) {
            return Err(SqlError::new(SqlState::UndefinedObject, format!("role {} does not exist", quote(role))));
        }
        if self.api_keys.0.lock().expect("api keys lock").len() >= MAX_API_KEYS {
            return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("a database has at most {MAX_API_KEYS} API keys")));
        }
        let random = |n: usize| -> SqlResult<Vec<u8>> {
            let mut bytes = vec![0u8; n];
            ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| SqlError::new(SqlState::Internal, "no random bytes for a key"))?;
            Ok(bytes)
        };
        let key_id: String = random(8)?.iter().map(|b| format!("{b:02x}")).collect();
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random(32)?);
        let key = ApiKey { id: catalog.next_id(), role: role.to_string(), secret_sha256: sha256(secret.as_bytes()) };
        self.save_api_key(&key_id, &key)?;
        self.api_keys.0.lock().expect("api keys lock").insert(key_id.clone(), key);
        tracing::info!(key = %key_id, role = %role, "created API key");
        QueryOutput::text_rows(&["id", "role", "key"], vec![vec![key_id.clone(), role.to_string(), format!("{TOKEN_PREFIX}{key_id}_{secret}")]])
    }

    fn save_api_key(&self, key_id: &str, key: &ApiKey) -> SqlResult<()> {
        let hash = base64::engine::general_purpose::STANDARD.encode(&key.secret_sha256);
        let resolved = BTreeMap::from([(ROLE_KEY.to_string(), key.role.clone()), (HASH_KEY.to_string(), hash)]);
        let record = DdlRecord { id: key.id, kind: ObjectKind::ApiKey, name: key_id.to_string(), sql: format!("CREATE API KEY FOR ROLE {}", quote(&key.role)), resolved };
        crate::durable::save(&self.store, &record)
    }

    /// An API key's record at start.
    pub(crate) fn restore_api_key(&self, record: &DdlRecord) -> SqlResult<()> {
        let corrupt = || SqlError::new(SqlState::Internal, format!("the catalog record of API key {} is corrupt", quote(&record.name)));
        let role = record.resolved.get(ROLE_KEY).ok_or_else(corrupt)?.clone();
        let secret_sha256 = base64::engine::general_purpose::STANDARD.decode(record.resolved.get(HASH_KEY).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
        self.api_keys.0.lock().expect("api keys lock").insert(record.name.clone(), ApiKey { id: record.id, role, secret_sha256 });
        Ok(())
    }

    /// `DROP API KEY [IF EXISTS] id`: the key stops working for the next request.
    pub(crate) async fn drop_api_key(&self, vars: &SessionVars, key_id: &str, if_exists: bool) -> SqlResult<QueryOutput> {
        if !self.roles.is_superuser(vars.current_role().as_deref()) {
            return Err(super::superuser_only("drop API keys"));
        }
        let _catalog = self.catalog.lock().await;
        let removed = self.api_keys.0.lock().expect("api keys lock").remove(key_id);
        match removed {
            Some(key) => crate::durable::remove(&self.store, key.id)?,
            None if if_exists => {}
            None => return Err(SqlError::new(SqlState::UndefinedObject, format!("API key {} does not exist", quote(key_id)))),
        }
        Ok(QueryOutput::command("DROP API KEY"))
    }

    /// Forgets the keys of a dropped role.
    pub(crate) fn drop_api_keys_of(&self, role: &str) -> SqlResult<()> {
        for id in self.api_keys.drop_role(role) {
            crate::durable::remove(&self.store, id)?;
        }
        Ok(())
    }

    /// `SHOW API KEYS`: ids and roles, never a key.
    pub(crate) fn show_api_keys(&self) -> SqlResult<QueryOutput> {
        let rows = self.api_keys.0.lock().expect("api keys lock").iter().map(|(id, k)| vec![id.clone(), k.role.clone()]).collect();
        QueryOutput::text_rows(&["id", "role"], rows)
    }

    /// Whether `role` (`None`: the superuser) holds `privilege` on relation `object`: what the
    /// HTTP and gRPC fronts check before ingesting into a table or subscribing to a view. An
    /// object that does not exist passes (the request then fails as it would have).
    pub async fn check_privilege(&self, role: Option<&str>, object: &str, privilege: super::Privilege) -> SqlResult<()> {
        if self.roles.is_superuser(role) {
            return Ok(());
        }
        let role = role.expect("only the superuser has no name");
        let kind = self.catalog.lock().await.get(object).map(|e| e.kind);
        match kind {
            Some(kind) if !self.roles.holds(Some(role), &super::Grantable::Relation(object.to_string()), privilege) => Err(super::denied(role, kind.sql_name(), object, privilege.sql_name())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_their_own_secret() {
        let keys = ApiKeys::default();
        keys.0.lock().unwrap().insert("00aa".into(), ApiKey { id: 1, role: "alice".into(), secret_sha256: sha256(b"s3cret") });
        assert_eq!(keys.role_of("ock_00aa_s3cret").as_deref(), Some("alice"));
        for wrong in ["ock_00aa_s3creT", "ock_00ab_s3cret", "00aa_s3cret", "ock_00aa", "", "ock__"] {
            assert_eq!(keys.role_of(wrong), None, "{wrong}");
        }
        assert_eq!(keys.drop_role("alice"), vec![1]);
        assert_eq!(keys.role_of("ock_00aa_s3cret"), None);
    }
}
