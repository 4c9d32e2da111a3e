//! fedjob test tools.

pub mod harness;
pub mod kubesim;
