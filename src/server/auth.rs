//! Who may connect, and how they prove it: `--auth trust | scram-sha-256`, the bootstrap
//! superuser and its password, and the rule that keeps a listener off the network without
//! authentication.
//!
//! Under `scram-sha-256` the Postgres front runs PostgreSQL's SASL exchange (the `pgwire`
//! crate's SCRAM-SHA-256) against the superuser's salted password, computed once at start: the
//! password itself is not kept, logged or written anywhere. Roles with passwords of their own
//! will add entries beside the superuser's.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::{gen_salted_password, random_nonce, SCRAM_ITERATIONS};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::PgWireResult;

/// Environment variable with the superuser's password.
pub const PASSWORD_ENV: &str = "OPENCLAW_PASSWORD";

/// Longest password file read (a password is one line).
const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// `--auth`: how clients of the Postgres front authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMethod {
    /// Any user name, no password: only while every listener is on loopback.
    Trust,
    /// PostgreSQL's SCRAM-SHA-256 password exchange.
    #[value(name = "scram-sha-256")]
    ScramSha256,
}

/// The resolved authentication of a server.
#[derive(Clone, Debug)]
pub enum Auth {
    Trust,
    Scram(std::sync::Arc<Superuser>),
}

/// The listeners a server opens, by front, for [`resolve`]'s loopback rule.
pub struct Listeners {
    pub pg: SocketAddr,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

/// Decides the authentication from the flags: `method` when given, else `scram-sha-256`
/// when a password is set or a listener is off loopback, else `trust`. Refuses (with what to
/// do instead) `scram-sha-256` without a password, `trust` on a non-loopback Postgres
/// listener, and the HTTP and gRPC fronts off loopback (they have no authentication yet).
pub fn resolve(method: Option<AuthMethod>, superuser: &str, password: Option<String>, listeners: &Listeners) -> Result<Auth, String> {
    if password.is_none() && !listeners.pg.ip().is_loopback() {
        return Err(refuse_open_listener(listeners.pg));
    }
    let method = method.unwrap_or(if password.is_some() || !listeners.pg.ip().is_loopback() { AuthMethod::ScramSha256 } else { AuthMethod::Trust });
    // Under scram-sha-256 the HTTP and gRPC fronts take API keys (`bearer_role`); under trust
    // they would let anyone in, so they stay on loopback.
    for (front, addr) in [("HTTP", listeners.http), ("gRPC", listeners.grpc)] {
        if method == AuthMethod::Trust && !addr.ip().is_loopback() {
            return Err(format!(
                "refusing to listen on {addr} for {front} without authentication: set the superuser's password in {PASSWORD_ENV} \
                 (or --password-file FILE) and use --auth scram-sha-256, so that requests need API keys, or listen on loopback"
            ));
        }
    }
    match (method, password) {
        (AuthMethod::Trust, _) if !listeners.pg.ip().is_loopback() => Err(refuse_open_listener(listeners.pg)),
        (AuthMethod::Trust, _) => Ok(Auth::Trust),
        (AuthMethod::ScramSha256, None) => Err(format!(
            "--auth scram-sha-256 needs the superuser's password: set {PASSWORD_ENV} or pass --password-file FILE"
        )),
        (AuthMethod::ScramSha256, Some(password)) if password.is_empty() => Err("the superuser's password is empty".to_string()),
        (AuthMethod::ScramSha256, Some(password)) => Ok(Auth::Scram(std::sync::Arc::new(Superuser::new(superuser, &password)))),
    }
}

fn refuse_open_listener(pg: SocketAddr) -> String {
    format!(
        "refusing to listen on {pg} without authentication: set the superuser's password in {PASSWORD_ENV} (or \
         --password-file FILE) and use --auth scram-sha-256, or listen on loopback"
    )
}

/// The superuser's password from `--password-file` (its first line) or [`PASSWORD_ENV`].
pub fn read_password(file: Option<&Path>) -> Result<Option<String>, String> {
    if let Some(path) = file {
        let len = std::fs::metadata(path).map_err(|e| format!("cannot read --password-file {}: {e}", path.display()))?.len();
        if len > MAX_PASSWORD_FILE_BYTES {
            return Err(format!("--password-file {} is larger than {MAX_PASSWORD_FILE_BYTES} bytes", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read --password-file {}: {e}", path.display()))?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
    }
    Ok(std::env::var(PASSWORD_ENV).ok())
}

/// The bootstrap superuser's SCRAM credentials.
pub struct Superuser {
    pub name: String,
    salt: Vec<u8>,
    salted_password: Vec<u8>,
    /// Keys the made-up salts of unknown users (see [`AuthSource::get_password`]).
    decoy: RandomState,
}

impl Superuser {
    fn new(name: &str, password: &str) -> Self {
        let salt = random_nonce().into_bytes();
        let salted_password = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self { name: name.to_string(), salt, salted_password, decoy: RandomState::new() }
    }

    /// A salt and salted password for a user that does not exist: the same for the same name,
    /// matching no password, so the exchange fails only at its proof, as for a wrong password
    /// (as PostgreSQL does, the reply does not tell which user names exist).
    fn decoy(&self, user: &str) -> Password {
        let seed = self.decoy.hash_one(user).to_le_bytes();
        let salt: Vec<u8> = seed.iter().chain(self.decoy.hash_one((user, 1u8)).to_le_bytes().iter()).copied().collect();
        let unguessable = self.decoy.hash_one((user, 2u8)).to_string();
        Password::new(Some(salt.clone()), gen_salted_password(&unguessable, &salt, 1))
    }
}

/// Never prints the salted password (it is a password equivalent).
impl fmt::Debug for Superuser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Superuser").field("name", &self.name).finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthSource for Superuser {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        match login.user() {
            Some(user) if user == self.name => Ok(Password::new(Some(self.salt.clone()), self.salted_password.clone())),
            user => Ok(self.decoy(user.unwrap_or_default())),
        }
    }
}

/// Who an HTTP or gRPC request runs as: `None` is the superuser.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<String>);

/// The role of a request's `Authorization: Bearer <API key>` header. Under `--auth
/// scram-sha-256` a request needs a key; under `trust` (loopback only) a request without one
/// runs as the superuser. A wrong key is 28000 (HTTP 401, gRPC UNAUTHENTICATED), never a
/// fallback.
pub fn bearer_role(db: &openclaw_sql::Database, auth: &Auth, header: Option<&str>) -> Result<Caller, openclaw_sql::SqlError> {
    use openclaw_sql::{SqlError, SqlState};
    let unauthorized = |message: &str| {
        SqlError::new(SqlState::InvalidAuthorizationSpecification, message).with_hint("send Authorization: Bearer <key>; a superuser makes one with CREATE API KEY FOR ROLE name")
    };
    match header {
        Some(value) => {
            let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or_else(|| unauthorized("the Authorization header takes Bearer <API key>"))?;
            db.api_key_role(token.trim()).map(|role| Caller(Some(role))).ok_or_else(|| unauthorized("invalid API key"))
        }
        None if matches!(auth, Auth::Scram(_)) => Err(unauthorized("an API key is required")),
        None => Ok(Caller(None)),
    }
}

/// Who may log in with a password: the bootstrap superuser, and the roles with `LOGIN` and a
/// password (`CREATE ROLE ... LOGIN PASSWORD '...'`), whose salted passwords the database
/// keeps. Anyone else gets a decoy, as an unknown user does.
pub struct Logins {
    pub superuser: Arc<Superuser>,
    pub db: Arc<openclaw_sql::Database>,
}

impl fmt::Debug for Logins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logins").field("superuser", &self.superuser).finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthSource for Logins {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        if user == self.superuser.name {
            return self.superuser.get_password(login).await;
        }
        match self.db.roles().login_verifier(user) {
            Some(v) => Ok(Password::new(Some(v.salt), v.salted_password)),
            None => Ok(self.superuser.decoy(user)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(pg: &str, http: &str) -> Listeners {
        Listeners { pg: pg.parse().unwrap(), http: http.parse().unwrap(), grpc: "127.0.0.1:0".parse().unwrap() }
    }

    #[test]
    fn trust_is_the_default_only_on_loopback() {
        let local = listeners("127.0.0.1:5433", "127.0.0.1:8080");
        assert!(matches!(resolve(None, "openclaw", None, &local), Ok(Auth::Trust)));
        assert!(matches!(resolve(None, "openclaw", Some("pw".into()), &local), Ok(Auth::Scram(_))));
        let open = listeners("0.0.0.0:5433", "127.0.0.1:8080");
        let refused = resolve(None, "openclaw", None, &open).unwrap_err();
        assert!(refused.contains(PASSWORD_ENV), "{refused}");
        assert!(resolve(Some(AuthMethod::Trust), "openclaw", Some("pw".into()), &open).is_err());
        assert!(matches!(resolve(None, "openclaw", Some("pw".into()), &open), Ok(Auth::Scram(_))));
        // HTTP and gRPC off loopback: only where requests need API keys.
        assert!(matches!(resolve(None, "openclaw", Some("pw".into()), &listeners("127.0.0.1:5433", "0.0.0.0:8080")), Ok(Auth::Scram(_))));
        assert!(resolve(None, "openclaw", None, &listeners("127.0.0.1:5433", "0.0.0.0:8080")).is_err());
        assert!(resolve(Some(AuthMethod::ScramSha256), "openclaw", Some(String::new()), &local).is_err());
    }

    #[test]
    fn debug_output_hides_the_salted_password() {
        let user = Superuser::new("admin", "secret");
        let shown = format!("{user:?}");
        assert!(shown.contains("admin") && !shown.contains(&format!("{:?}", user.salted_password)), "{shown}");
    }

    #[test]
    fn unknown_users_get_a_stable_decoy() {
        let user = Superuser::new("admin", "secret");
        let (a, b) = (user.decoy("mallory"), user.decoy("mallory"));
        assert_eq!((a.salt(), a.password()), (b.salt(), b.password()));
        assert_ne!(a.salt(), user.decoy("eve").salt());
    }
}
