//! Errors of the coordinate engine's events and queries.

use super::keys::ThreadKey;

/// Why an engine event or query could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The thread state was never announced with [`super::Engine::new_thread`]
    /// (or was removed).
    #[error("unknown thread state {key:#x}", key = .0 .0)]
    UnknownThread(ThreadKey),
    /// `leave` without a matching `enter`.
    #[error("leave without enter on thread state {key:#x}", key = .0 .0)]
    UnbalancedLeave(ThreadKey),
    /// `callback_exit` without a matching `callback_enter`.
    #[error("callback exit without entry on thread state {key:#x}", key = .0 .0)]
    UnbalancedCallback(ThreadKey),
}
