//! fedjob test tools.
