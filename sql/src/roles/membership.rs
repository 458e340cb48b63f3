//! Role membership: `GRANT group TO role` and `REVOKE group FROM role`. A member holds its
//! groups' privileges (and theirs, through groups of groups: PostgreSQL's `INHERIT`, its
//! default) and may `SET ROLE` to them; a group's superuser attribute is not inherited.
//! Memberships are kept in the member's record, so they are durable with it.

use super::{superuser_only, Role, PUBLIC_ROLE};
use crate::database::{Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::session::SessionVars;

impl Database {
    /// `SET ROLE name`: to any role for a superuser, else to the session's own login role or
    /// a role it is a member of (directly or through others), as in PostgreSQL.
    pub(crate) fn check_set_role(&self, vars: &SessionVars, role: &str) -> SqlResult<()> {
        if role == "none" {
            return Ok(());
        }
        if !self.roles.exists(role) {
            return Err(SqlError::new(SqlState::UndefinedObject, format!("role {} does not exist", quote(role))));
        }
        let session = vars.session_user.as_deref();
        match self.roles.is_superuser(session) || session.is_some_and(|s| self.roles.memberships(s).contains(role)) {
            true => Ok(()),
            false => Err(SqlError::new(SqlState::InsufficientPrivilege, format!("permission denied to set role {}", quote(role)))),
        }
    }

    /// Adds (`grant`) or removes `members`' memberships of `groups`. Only a superuser may (no
    /// role holds ADMIN OPTION here). Refuses a membership that would make a cycle, as
    /// PostgreSQL does (0LP01).
    pub(crate) async fn change_membership(&self, vars: &SessionVars, groups: &[String], members: &[String], grant: bool) -> SqlResult<QueryOutput> {
        if !self.roles.is_superuser(vars.current_role().as_deref()) {
            return Err(superuser_only(if grant { "grant role membership" } else { "revoke role membership" }));
        }
        let _catalog = self.catalog.lock().await;
        for name in groups.iter().chain(members) {
            if name == PUBLIC_ROLE || !self.roles.exists(name) {
                return Err(super::ddl::undefined_role(name));
            }
        }
        for member in members {
            let mut role = self.roles.get(member).ok_or_else(|| super::ddl::undefined_role(member))?;
            for group in groups {
                match grant {
                    true => {
                        // `group` must not be `member`, nor be a member of it already.
                        if self.roles.memberships(group).contains(member) {
                            return Err(SqlError::new(SqlState::InvalidGrantOperation, format!("role {} is a member of role {}", quote(group), quote(member))));
                        }
                        role.member_of.insert(group.clone());
                    }
                    false => {
                        role.member_of.remove(group);
                    }
                }
            }
            self.save_role(&role)?;
            self.roles.put(role);
        }
        Ok(QueryOutput::command(if grant { "GRANT ROLE" } else { "REVOKE ROLE" }))
    }

    /// A dropped role's members are members of it no more; returns them, rewritten.
    pub(crate) fn forget_memberships_of(&self, group: &str) -> SqlResult<Vec<Role>> {
        let mut changed = vec![];
        for mut member in self.roles.members_of(group) {
            member.member_of.remove(group);
            self.save_role(&member)?;
            self.roles.put(member.clone());
            changed.push(member);
        }
        Ok(changed)
    }
}
