//! The fedjob syncer agent.
