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
//!
//! On them, the scheduler's edge (`fedjob-scheduler --kube-api-listen`): [`serve`] (listener,
//! TLS), [`edge`] (the request layer every resource shares: authentication, routing, body limit,
//! content negotiation, metrics), [`documents`] and [`openapi`] (discovery), and one module per
//! resource served: [`jobs`], [`events`], [`clusters`] (the last two read-only
//! [`objects`] collections).

pub mod apply;
pub mod call;
pub mod clock;
pub mod clusters;
pub mod discovery;
pub mod documents;
pub mod edge;
pub mod events;
pub mod fieldset;
pub mod jobs;
pub mod kubeconfig;
pub mod managed;
pub mod objects;
pub mod openapi;
pub mod pages;
pub mod params;
pub mod patch;
pub mod path;
pub mod resource;
pub mod respond;
pub mod schema;
pub mod selector;
pub mod serve;
pub mod status;
pub mod table;
pub mod watch;
