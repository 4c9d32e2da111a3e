//! fedjob test tools.

pub mod bench;
pub mod harness;
pub mod kubesim;
