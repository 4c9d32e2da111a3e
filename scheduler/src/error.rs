//! The errors of operations on the federation, shared by its state owners and the verbs the
//! API edges call; [`crate::api::status`] maps each to the gRPC status a client expects.

use crate::model::edit::Refused;
use crate::model::manifest::Invalid;
use crate::records::RecordError;
use crate::records::migrate::MigrateError;
use crate::store::StoreError;

/// Errors of operations on the federation.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The request is not a valid Job (or change of one).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No Job or cluster of that name.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// `jobs.batch` or `clusters`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The name is taken.
    #[error("jobs.batch \"{name}\" already exists")]
    AlreadyExists {
        /// The name asked for.
        name: String,
    },
    /// The caller's resourceVersion is stale.
    #[error(
        "Operation cannot be fulfilled on jobs.batch \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// The Job's name.
        name: String,
    },
    /// The request cannot be carried out in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The store was written by a newer fedjob.
    #[error(
        "the store was written by a newer fedjob (store format {found}); this fedjob-scheduler reads store formats 1 to {supported}: run a newer fedjob-scheduler on it, or start on an empty store"
    )]
    NewerStore {
        /// The store's format.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// A stored record could not be decoded.
    #[error("stored record {key} is unreadable: {reason}")]
    Corrupt {
        /// Store key.
        key: String,
        /// What went wrong.
        reason: String,
    },
}

/// Results of operations on the federation.
pub type Result<T, E = ControlPlaneError> = std::result::Result<T, E>;

impl ControlPlaneError {
    /// No Job of this name.
    pub fn job_not_found(name: &str) -> Self {
        Self::NotFound {
            kind: "jobs.batch",
            name: name.to_owned(),
        }
    }
}

impl From<Refused> for ControlPlaneError {
    fn from(e: Refused) -> Self {
        match e {
            Refused::Conflict { name } => Self::Conflict { name },
            e @ Refused::BeingDeleted { .. } => Self::FailedPrecondition(e.to_string()),
            Refused::Invalid(e) => Self::Invalid(e),
        }
    }
}

impl From<RecordError> for ControlPlaneError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Corrupt { key, reason } => Self::Corrupt { key, reason },
            RecordError::NewerFormat { found, supported } => Self::NewerStore { found, supported },
        }
    }
}

impl From<MigrateError> for ControlPlaneError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Record(e) => e.into(),
            MigrateError::Store(e) => e.into(),
        }
    }
}
