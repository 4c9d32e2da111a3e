//! `fedctl kubeconfig`: a kubeconfig for the federation's Kubernetes API, so kubectl and every
//! Kubernetes client reach it as `--context federation-cluster`.

use std::io::Write;

use anyhow::Context as _;
use clap::Args;

use crate::kube_api::kubeconfig::{self, Context};

/// The context name the seed's walkthrough uses.
pub const DEFAULT_CONTEXT: &str = "federation-cluster";

/// `fedctl kubeconfig --kube-api URL [--context NAME]`.
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The scheduler's Kubernetes API (`--kube-api-listen`): `https://host:port`, or
    /// `http://127.0.0.1:port` on loopback.
    #[arg(long = "kube-api", value_name = "URL")]
    pub kube_api: String,
    /// Name of the context (and of its cluster and user).
    #[arg(long, default_value = DEFAULT_CONTEXT)]
    pub context: String,
}

/// Prints the kubeconfig: the server, the CA of `--ca`, the token of `--token`, the namespace
/// of `-n`.
pub fn print(
    args: &KubeconfigArgs,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
    namespace: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let url = args.kube_api.trim_end_matches('/');
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        anyhow::bail!(super::UsageError::new(format!(
            "error: --kube-api {url}: give a URL, https://host:port or http://host:port"
        )));
    }
    let ca_pem = ca
        .map(|path| std::fs::read(path).with_context(|| format!("--ca {}", path.display())))
        .transpose()?;
    let context = Context {
        name: args.context.clone(),
        server: url.to_owned(),
        ca_pem,
        token: token.map(str::to_owned),
        namespace: Some(namespace.to_owned()),
    };
    write!(out, "{}", kubeconfig::render(&[context]))?;
    Ok(())
}
