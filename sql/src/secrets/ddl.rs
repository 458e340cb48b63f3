//! `CREATE SECRET`, `DROP SECRET`, `SHOW SECRETS`, and a secret's record replayed at start.

use crate::database::{Database, QueryOutput};
use crate::durable::DdlRecord;
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::parser::ObjectKind;

use super::{decode_sealed, encode_sealed, undefined_secret, SEALED_KEY};

impl Database {
    /// Seals the value and stores the record (its statement without the value); the value
    /// itself is written nowhere.
    pub(crate) async fn create_secret(&self, name: &str, if_not_exists: bool, value: &str, text: &str) -> SqlResult<QueryOutput> {
        let mut catalog = self.catalog.lock().await;
        if self.secrets.contains(name) {
            if if_not_exists {
                return Ok(QueryOutput::command("CREATE SECRET"));
            }
            return Err(SqlError::new(SqlState::DuplicateObject, format!("secret {} already exists", quote(name))));
        }
        let sealed = self.secrets.seal(name, value)?;
        let id = catalog.next_id();
        let resolved = [(SEALED_KEY.to_string(), encode_sealed(&sealed))].into();
        self.persist(id, ObjectKind::Secret, name, text, resolved)?;
        self.secrets.insert(id, name, sealed)?;
        tracing::info!(secret = %name, "created secret");
        Ok(QueryOutput::command("CREATE SECRET"))
    }

    /// A secret's record at start. The key must open it: a server started with another key
    /// (or none) stops here rather than run its connectors without their credentials.
    pub(crate) fn restore_secret(&self, record: &DdlRecord) -> SqlResult<()> {
        let sealed = record.resolved.get(SEALED_KEY).ok_or_else(|| SqlError::new(SqlState::Internal, format!("the catalog record of secret {} has no value", quote(&record.name))))?;
        self.secrets.insert(record.id, &record.name, decode_sealed(&record.name, sealed)?)
    }

    /// `DROP SECRET`: refused while a source, table or sink refers to it (there is no
    /// CASCADE: dropping a connector's credentials would stop it).
    pub(crate) async fn drop_secrets(&self, names: &[datafusion::sql::sqlparser::ast::ObjectName], if_exists: bool) -> SqlResult<QueryOutput> {
        let _catalog = self.catalog.lock().await;
        for name in names {
            let name = secret_name(name)?;
            if !self.secrets.contains(&name) {
                if if_exists {
                    continue;
                }
                return Err(undefined_secret(&name));
            }
            let users = self.secrets.users(&name);
            if !users.is_empty() {
                return Err(SqlError::new(SqlState::DependentObjectsStillExist, format!("cannot drop secret {} because other objects use it", quote(&name)))
                    .with_detail(users.iter().map(|u| format!("{} uses secret {}", quote(u), quote(&name))).collect::<Vec<_>>().join("\n"))
                    .with_hint("drop those objects first"));
            }
            let id = self.secrets.remove(&name).expect("checked under the catalog lock");
            crate::durable::remove(&self.store, id)?;
            tracing::info!(secret = %name, "dropped secret");
        }
        Ok(QueryOutput::command("DROP SECRET"))
    }

    /// `SHOW SECRETS`: names only.
    pub(crate) fn show_secrets(&self) -> SqlResult<QueryOutput> {
        QueryOutput::text_rows(&["name"], self.secrets.names().into_iter().map(|n| vec![n]).collect())
    }
}

/// A secret's name as `DROP SECRET` gives it: one identifier, folded as in `CREATE SECRET`.
fn secret_name(name: &datafusion::sql::sqlparser::ast::ObjectName) -> SqlResult<String> {
    match name.0.as_slice() {
        [part] => {
            let ident = part.as_ident().ok_or_else(|| SqlError::new(SqlState::SyntaxError, "a secret's name is one identifier"))?;
            Ok(match ident.quote_style {
                Some(_) => ident.value.clone(),
                None => ident.value.to_ascii_lowercase(),
            })
        }
        _ => Err(SqlError::new(SqlState::SyntaxError, "a secret's name is one identifier (secrets are not in a schema)")),
    }
}
