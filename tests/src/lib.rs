//! fedjob test tools.

pub mod kubesim;
