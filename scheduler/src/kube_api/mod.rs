//! The Kubernetes REST API: the machinery a server of it needs, whatever it serves.
//!
//! These are the API server's rules, in one place, used by the scheduler's Kubernetes API edge
//! and by the simulated member clusters of the tests (`fedjob-kubesim`):
//! - the request: [`path`] (what a URL addresses), [`params`] (query parameters, bodies,
//!   `DeleteOptions`), [`selector`] (label and field selectors);
//! - the object: [`patch`] (the four patch types), [`fieldset`], [`managed`] and [`schema`]
//!   (managed fields and server-side apply);
//! - the answer: [`status`] (`Status` errors), [`respond`], [`table`] (server-side printing),
//!   [`watch`] (event framing), [`pages`] (`limit`/`continue`), [`discovery`];
//! - names and times: [`resource`], [`clock`]; and [`kubeconfig`] files for clients.

pub mod clock;
pub mod discovery;
pub mod fieldset;
pub mod kubeconfig;
pub mod managed;
pub mod pages;
pub mod params;
pub mod patch;
pub mod path;
pub mod resource;
pub mod respond;
pub mod schema;
pub mod selector;
pub mod status;
pub mod table;
pub mod watch;
