//! The fedjob federation control plane.
