//! `CREATE ROLE | USER`, `ALTER ROLE`, `DROP ROLE`, `GRANT`, `REVOKE`, `SHOW ROLES` and a
//! role's record replayed at start.

use std::collections::BTreeSet;

use datafusion::sql::sqlparser::ast::{
    Action, AlterRoleOperation, CreateRole, Expr, Grant, GrantObjects, Grantee, GranteeName, GranteesType, ObjectName, Password, Privileges, Revoke, RoleOption, Value,
};

use super::{superuser_only, Grantable, Privilege, Role, ScramVerifier, MAX_ROLES, PUBLIC_ROLE};
use crate::database::{object_name, Database, QueryOutput};
use crate::durable::DdlRecord;
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::parser::ObjectKind;
use crate::session::SessionVars;

pub(super) fn undefined_role(name: &str) -> SqlError {
    SqlError::new(SqlState::UndefinedObject, format!("role {} does not exist", quote(name)))
}

/// A role's name: one identifier, folded to lower case unless quoted.
fn role_name(name: &ObjectName) -> SqlResult<String> {
    match name.0.as_slice() {
        [part] => {
            let ident = part.as_ident().ok_or_else(|| SqlError::new(SqlState::SyntaxError, "a role's name is one identifier"))?;
            Ok(if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_ascii_lowercase() })
        }
        _ => Err(SqlError::new(SqlState::SyntaxError, "a role's name is one identifier")),
    }
}

fn password_text(password: &Password) -> SqlResult<Option<String>> {
    match password {
        Password::NullPassword => Ok(None),
        Password::Password(Expr::Value(v)) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            _ => Err(SqlError::new(SqlState::SyntaxError, "a password is a string literal")),
        },
        Password::Password(_) => Err(SqlError::new(SqlState::SyntaxError, "a password is a string literal")),
    }
}

/// Applies `LOGIN`, `SUPERUSER` and `PASSWORD` to `role`; other options are refused.
fn apply(role: &mut Role, options: &[RoleOption]) -> SqlResult<()> {
    for option in options {
        match option {
            RoleOption::Login(v) => role.login = *v,
            RoleOption::SuperUser(v) => role.superuser = *v,
            RoleOption::Password(p) => role.password = password_text(p)?.map(|p| ScramVerifier::new(&p)).transpose()?,
            // What PostgreSQL's roles have and OpenClaw's need not: accepted when it changes
            // nothing.
            RoleOption::Inherit(true) | RoleOption::CreateDB(false) | RoleOption::CreateRole(false) | RoleOption::Replication(false) | RoleOption::BypassRLS(false) => {}
            other => return Err(SqlError::not_supported(format!("role option {other} is not supported")).with_hint("roles take LOGIN, SUPERUSER and PASSWORD")),
        }
    }
    Ok(())
}

impl Database {
    pub(crate) fn save_role(&self, role: &Role) -> SqlResult<()> {
        let record = DdlRecord { id: role.id, kind: ObjectKind::Role, name: role.name.clone(), sql: role.sql(), resolved: role.resolved() };
        crate::durable::save(&self.store, &record)
    }

    /// A role's record at start.
    pub(crate) fn restore_role(&self, record: &DdlRecord) -> SqlResult<()> {
        self.roles.put(Role::from_record(record)?);
        Ok(())
    }

    pub(crate) async fn create_role(&self, vars: &SessionVars, create: &CreateRole) -> SqlResult<QueryOutput> {
        if !self.roles.is_superuser(vars.current_role().as_deref()) {
            return Err(superuser_only("create roles"));
        }
        let mut catalog = self.catalog.lock().await;
        for name in &create.names {
            let name = role_name(name)?;
            if name == PUBLIC_ROLE || name.starts_with("pg_") {
                return Err(SqlError::new(SqlState::ReservedName, format!("role name {} is reserved", quote(&name))));
            }
            if self.roles.exists(&name) {
                if create.if_not_exists {
                    continue;
                }
                return Err(SqlError::new(SqlState::DuplicateObject, format!("role {} already exists", quote(&name))));
            }
            if self.roles.len() >= MAX_ROLES {
                return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("a database has at most {MAX_ROLES} roles")));
            }
            let mut role = Role::named(catalog.next_id(), &name);
            let mut options = vec![];
            options.extend(create.login.map(RoleOption::Login));
            options.extend(create.superuser.map(RoleOption::SuperUser));
            options.extend(create.password.clone().map(RoleOption::Password));
            apply(&mut role, &options)?;
            if create.inherit == Some(false) || create.create_db == Some(true) || create.create_role == Some(true) || create.connection_limit.is_some() || create.valid_until.is_some() || !create.role.is_empty() {
                return Err(SqlError::not_supported("only LOGIN, SUPERUSER, PASSWORD and IN ROLE are supported on roles"));
            }
            // `IN ROLE group, ...`: a member of each from the start.
            for group in &create.in_role {
                let group = if group.quote_style.is_some() { group.value.clone() } else { group.value.to_ascii_lowercase() };
                if group == PUBLIC_ROLE || !self.roles.exists(&group) {
                    return Err(undefined_role(&group));
                }
                role.member_of.insert(group);
            }
            self.save_role(&role)?;
            self.roles.put(role);
            tracing::info!(role = %name, "created role");
        }
        Ok(QueryOutput::command("CREATE ROLE"))
    }

    pub(crate) async fn alter_role(&self, vars: &SessionVars, name: &datafusion::sql::sqlparser::ast::Ident, operation: &AlterRoleOperation) -> SqlResult<QueryOutput> {
        let name = if name.quote_style.is_some() { name.value.clone() } else { name.value.to_ascii_lowercase() };
        let current = vars.current_role();
        let _catalog = self.catalog.lock().await;
        let mut role = self.roles.get(&name).ok_or_else(|| undefined_role(&name))?;
        let AlterRoleOperation::WithOptions { options } = operation else {
            return Err(SqlError::not_supported("ALTER ROLE takes WITH options (LOGIN, SUPERUSER, PASSWORD)"));
        };
        // A role may change its own password, as in PostgreSQL.
        let own_password = current.as_deref() == Some(name.as_str()) && options.iter().all(|o| matches!(o, RoleOption::Password(_)));
        if !own_password && !self.roles.is_superuser(current.as_deref()) {
            return Err(superuser_only("alter roles"));
        }
        apply(&mut role, options)?;
        self.save_role(&role)?;
        self.roles.put(role);
        Ok(QueryOutput::command("ALTER ROLE"))
    }

    pub(crate) async fn drop_roles(&self, vars: &SessionVars, names: &[ObjectName], if_exists: bool) -> SqlResult<QueryOutput> {
        if !self.roles.is_superuser(vars.current_role().as_deref()) {
            return Err(superuser_only("drop roles"));
        }
        let _catalog = self.catalog.lock().await;
        for name in names {
            let name = role_name(name)?;
            let Some(role) = self.roles.get(&name) else {
                if if_exists {
                    continue;
                }
                return Err(undefined_role(&name));
            };
            let owned = self.roles.owned_by(&name);
            if !owned.is_empty() {
                return Err(SqlError::new(SqlState::DependentObjectsStillExist, format!("role {} cannot be dropped because some objects depend on it", quote(&name)))
                    .with_detail(owned.iter().map(|o| format!("owner of {}", quote(o))).collect::<Vec<_>>().join("\n"))
                    .with_hint("drop those objects first"));
            }
            self.drop_api_keys_of(&name)?;
            crate::durable::remove(&self.store, role.id)?;
            self.roles.remove(&name);
            self.forget_memberships_of(&name)?;
            tracing::info!(role = %name, "dropped role");
        }
        Ok(QueryOutput::command("DROP ROLE"))
    }

    pub(crate) async fn grant(&self, vars: &SessionVars, grant: &Grant) -> SqlResult<QueryOutput> {
        self.change_grants(vars, &grant.privileges, grant.objects.as_ref(), &grant.grantees, true).await?;
        Ok(QueryOutput::command("GRANT"))
    }

    pub(crate) async fn revoke(&self, vars: &SessionVars, revoke: &Revoke) -> SqlResult<QueryOutput> {
        self.change_grants(vars, &revoke.privileges, revoke.objects.as_ref(), &revoke.grantees, false).await?;
        Ok(QueryOutput::command("REVOKE"))
    }

    /// Adds (`grant`) or removes privileges of roles on objects; the records of the roles
    /// changed are written before the statement returns, and the next statement of any session
    /// sees the change.
    async fn change_grants(&self, vars: &SessionVars, privileges: &Privileges, objects: Option<&GrantObjects>, grantees: &[Grantee], grant: bool) -> SqlResult<()> {
        let current = vars.current_role();
        let mut catalog = self.catalog.lock().await;
        let targets = self.grant_targets(&catalog, objects)?;
        // A superuser grants anything; an owner grants on what it owns.
        if !self.roles.is_superuser(current.as_deref()) {
            let role = current.clone().unwrap_or_default();
            for target in &targets {
                let owns = matches!(target, Grantable::Relation(r) if self.roles.owner(r).as_deref() == Some(role.as_str()));
                if !owns {
                    let (kind, name) = match target {
                        Grantable::Relation(r) => (catalog.get(r).map(|e| e.kind.sql_name()).unwrap_or("relation"), r.as_str()),
                        Grantable::Schema(s) => ("schema", s.as_str()),
                    };
                    return Err(SqlError::new(SqlState::InsufficientPrivilege, format!("permission denied for {kind} {}", quote(name)))
                        .with_hint("only its owner or a superuser may grant or revoke privileges on it"));
                }
            }
        }
        let privileges: BTreeSet<Privilege> = match privileges {
            Privileges::All { .. } => match targets.first() {
                Some(Grantable::Schema(_)) => BTreeSet::from([Privilege::Create]),
                _ => Privilege::ON_RELATIONS.into_iter().collect(),
            },
            Privileges::Actions(actions) => actions.iter().map(privilege_of).collect::<SqlResult<_>>()?,
        };
        for target in &targets {
            let schema = matches!(target, Grantable::Schema(_));
            if let Some(p) = privileges.iter().find(|p| (**p == Privilege::Create) != schema) {
                return Err(SqlError::new(SqlState::InvalidGrantOperation, format!("invalid privilege type {} for {}", p.sql_name(), if schema { "schema" } else { "relation" })));
            }
        }
        for grantee in grantees {
            let name = grantee_name(grantee)?;
            let mut role = match (self.roles.get(&name), name == PUBLIC_ROLE) {
                (Some(role), _) => role,
                // PUBLIC's grants are kept as a role's that no one can log in as.
                (None, true) => Role::named(catalog.next_id(), PUBLIC_ROLE),
                (None, false) => return Err(undefined_role(&name)),
            };
            for target in &targets {
                let held = role.grants.entry(target.clone()).or_default();
                match grant {
                    true => held.extend(privileges.iter().copied()),
                    false => held.retain(|p| !privileges.contains(p)),
                }
                if held.is_empty() {
                    role.grants.remove(target);
                }
            }
            self.save_role(&role)?;
            self.roles.put(role);
        }
        Ok(())
    }

    fn grant_targets(&self, catalog: &crate::catalog::Catalog, objects: Option<&GrantObjects>) -> SqlResult<Vec<Grantable>> {
        let relation = |name: &ObjectName| -> SqlResult<Grantable> {
            let name = object_name(name)?;
            match catalog.get(&name).map(|e| e.kind) {
                Some(ObjectKind::Table | ObjectKind::Source | ObjectKind::MaterializedView | ObjectKind::View | ObjectKind::Subscription) => Ok(Grantable::Relation(name)),
                Some(kind) => Err(SqlError::new(SqlState::WrongObjectType, format!("{} is a {}, which takes no privileges", quote(&name), kind.sql_name()))),
                None => Err(crate::database::undefined(&name)),
            }
        };
        let schema = |name: &ObjectName| -> SqlResult<String> {
            let name = object_name(name)?;
            match name == crate::schemas::PUBLIC || catalog.schema_id(&name).is_some() {
                true => Ok(name),
                false => Err(SqlError::new(SqlState::InvalidSchemaName, format!("schema {} does not exist", quote(&name)))),
            }
        };
        match objects {
            Some(GrantObjects::Tables(names)) => names.iter().map(relation).collect(),
            Some(GrantObjects::Schemas(names)) => names.iter().map(|n| schema(n).map(Grantable::Schema)).collect(),
            Some(GrantObjects::AllTablesInSchema { schemas }) => {
                let schemas: Vec<String> = schemas.iter().map(schema).collect::<SqlResult<_>>()?;
                Ok([ObjectKind::Table, ObjectKind::Source, ObjectKind::MaterializedView, ObjectKind::View]
                    .into_iter()
                    .flat_map(|kind| catalog.of_kind(kind))
                    .filter(|e| schemas.iter().any(|s| s == crate::schemas::split(&e.name).0))
                    .map(|e| Grantable::Relation(e.name.clone()))
                    .collect())
            }
            _ => Err(SqlError::not_supported("GRANT and REVOKE take ON [TABLE] name, ON ALL TABLES IN SCHEMA s, or ON SCHEMA s")
                .with_hint("role membership is GRANT role TO role")),
        }
    }

    /// `SHOW ROLES`: each role's name and attributes (never its password).
    pub(crate) fn show_roles(&self) -> SqlResult<QueryOutput> {
        let rows = self
            .roles
            .names()
            .into_iter()
            .filter(|r| r.name != PUBLIC_ROLE)
            .map(|r| {
                let member_of = (!r.member_of.is_empty()).then(|| r.member_of.iter().cloned().collect::<Vec<_>>().join(","));
                vec![Some(r.name.clone()), Some(r.login.to_string()), Some(r.superuser.to_string()), Some(r.password.is_some().to_string()), member_of]
            })
            .collect();
        // `member_of`: the groups it is in, comma-separated; NULL for none.
        QueryOutput::nullable_text_rows(&["name", "login", "superuser", "has_password", "member_of"], rows)
    }
}

fn privilege_of(action: &Action) -> SqlResult<Privilege> {
    match action {
        Action::Select { columns: None } => Ok(Privilege::Select),
        Action::Insert { columns: None } => Ok(Privilege::Insert),
        Action::Update { columns: None } => Ok(Privilege::Update),
        Action::Delete => Ok(Privilege::Delete),
        Action::Create { obj_type: None } => Ok(Privilege::Create),
        other => Err(SqlError::not_supported(format!("privilege {other} is not supported")).with_hint("SELECT, INSERT, UPDATE, DELETE, CREATE (on a schema) or ALL")),
    }
}

fn grantee_name(grantee: &Grantee) -> SqlResult<String> {
    match (&grantee.grantee_type, &grantee.name) {
        (GranteesType::Public, _) => Ok(PUBLIC_ROLE.into()),
        (_, Some(GranteeName::ObjectName(name))) => role_name(name),
        _ => Err(SqlError::not_supported(format!("grantee {grantee} is not supported"))),
    }
}
