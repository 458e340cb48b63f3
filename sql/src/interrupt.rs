//! Why a statement stops before it ends: its `statement_timeout`, or a cancel request (psql's
//! Ctrl-C, a driver's cancel), both PostgreSQL's 57014. Only waits stop: a query's planning
//! and rows, `FLUSH`'s waits, a subscription's wait for changes; never a write or a DDL half
//! done, which must not stop in the middle (as PostgreSQL checks for interrupts at safe
//! points only).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{SqlError, SqlState};

/// A statement's cancel request, fired from another task (the server's, on a CancelRequest).
#[derive(Clone, Default, Debug)]
pub struct CancelSignal(Arc<Inner>);

#[derive(Default, Debug)]
struct Inner {
    fired: AtomicBool,
    notify: tokio::sync::Notify,
}

impl CancelSignal {
    pub fn cancel(&self) {
        self.0.fired.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_canceled(&self) -> bool {
        self.0.fired.load(Ordering::SeqCst)
    }

    /// Resolves once [`Self::cancel`] is called (at once if it was).
    pub async fn canceled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_canceled() {
                return;
            }
            notified.await;
        }
    }
}

/// When a statement's waits stop: at its deadline, or when it is canceled.
#[derive(Clone, Default, Debug)]
pub struct Interrupt {
    pub deadline: Option<tokio::time::Instant>,
    pub cancel: CancelSignal,
}

impl Interrupt {
    /// `fut`, or the 57014 error of whichever comes first: the deadline or a cancel.
    pub async fn until<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, SqlError> {
        let deadline = async {
            match self.deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = fut => Ok(out),
            () = deadline => Err(statement_timeout()),
            () = self.cancel.canceled() => Err(user_cancel()),
        }
    }
}

pub(crate) fn statement_timeout() -> SqlError {
    SqlError::new(SqlState::QueryCanceled, "canceling statement due to statement timeout")
}

pub fn user_cancel() -> SqlError {
    SqlError::new(SqlState::QueryCanceled, "canceling statement due to user request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_or_the_deadline_stops_the_wait_with_57014() {
        let never = std::future::pending::<()>();
        let interrupt = Interrupt::default();
        let canceling = interrupt.cancel.clone();
        tokio::spawn(async move { canceling.cancel() });
        let e = interrupt.until(never).await.unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (SqlState::QueryCanceled, "canceling statement due to user request"));
        let timed = Interrupt { deadline: Some(tokio::time::Instant::now()), ..Default::default() };
        assert_eq!(timed.until(std::future::pending::<()>()).await.unwrap_err().message, "canceling statement due to statement timeout");
        assert_eq!(Interrupt::default().until(async { 7 }).await.unwrap(), 7);
    }
}
