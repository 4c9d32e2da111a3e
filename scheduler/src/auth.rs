//! Who may call what.
//!
//! Users present a bearer token from `--tokens FILE` (`token,user,role` per line; roles `admin`
//! and `viewer`); on the Kubernetes API, a TLS client certificate naming one of those users
//! (signed by `--client-ca`) stands for the token. Agents present a TLS client certificate signed by `--client-ca`: the cluster
//! they may act for is the certificate's DNS SAN (else its CN), so a compromised member cluster
//! cannot speak for another. Health and reflection need neither.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Status};
use tracing::warn;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::metrics::{Metrics, ReasonLabels};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// get, list, describe, plan, watch.
    Viewer,
}

/// What a call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only reads.
    Read,
    /// Changes something.
    Write,
}

/// Why a user's call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No valid token (or certificate of a known user) was presented.
    #[error("a valid bearer token is required (fedctl --token or $FEDJOB_TOKEN)")]
    Unauthenticated,
    /// The user may not change anything.
    #[error("user \"{user}\" is a viewer: it may get, list, describe, plan and watch, not change")]
    Forbidden {
        /// The user's name.
        user: String,
    },
}

/// The `--tokens` file, parsed.
#[derive(Debug, Default, Clone)]
pub struct Tokens(HashMap<String, (String, Role)>);

impl Tokens {
    /// Parses `token,user,role` lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [token, user, role] = fields[..] else {
                return Err(format!("line {}: expected token,user,role", i + 1));
            };
            let role = match role {
                "admin" => Role::Admin,
                "viewer" => Role::Viewer,
                other => {
                    return Err(format!(
                        "line {}: role {other:?} is not admin or viewer",
                        i + 1
                    ));
                }
            };
            if token.is_empty() || user.is_empty() {
                return Err(format!("line {}: token and user must not be empty", i + 1));
            }
            if tokens
                .insert(token.to_owned(), (user.to_owned(), role))
                .is_some()
            {
                return Err(format!("line {}: token given twice", i + 1));
            }
        }
        Ok(Self(tokens))
    }
}

/// The access rules in force.
#[derive(Clone)]
pub struct Guard {
    tokens: Option<Arc<Tokens>>,
    agent_certificates: bool,
    metrics: Arc<Metrics>,
}

impl Guard {
    /// Rules from the flags: users need tokens when `tokens` is set, agents need client
    /// certificates when `agent_certificates` is.
    pub fn new(tokens: Option<Tokens>, agent_certificates: bool, metrics: Arc<Metrics>) -> Self {
        Self {
            tokens: tokens.map(Arc::new),
            agent_certificates,
            metrics,
        }
    }

    /// Checks a user call; returns the user's name (empty without `--tokens`).
    pub fn user<T>(&self, request: &Request<T>, access: Access) -> Result<String, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.check_user(authorization, &[], access)
            .map_err(|refusal| match refusal {
                Refusal::Unauthenticated => Status::unauthenticated(refusal.to_string()),
                Refusal::Forbidden { .. } => Status::permission_denied(refusal.to_string()),
            })
    }

    /// Checks a user by what the call presents, whatever its transport: an `Authorization`
    /// header (`Bearer TOKEN`), or a verified client certificate naming a user of `--tokens`
    /// (`certificate_names`). Returns the user's name (empty without `--tokens`).
    pub fn check_user(
        &self,
        authorization: Option<&str>,
        certificate_names: &[String],
        access: Access,
    ) -> Result<String, Refusal> {
        let Some(tokens) = &self.tokens else {
            return Ok(String::new());
        };
        let presented = authorization.and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
        let by_token = presented.and_then(|t| tokens.0.get(t.trim()));
        let by_certificate = || {
            tokens
                .0
                .values()
                .find(|(user, _)| certificate_names.contains(user))
        };
        let Some((user, role)) = by_token.or_else(by_certificate) else {
            self.refused("unauthenticated");
            return Err(Refusal::Unauthenticated);
        };
        if access == Access::Write && *role == Role::Viewer {
            self.refused("forbidden");
            return Err(Refusal::Forbidden { user: user.clone() });
        }
        Ok(user.clone())
    }

    /// Checks that an agent call may act for `cluster`.
    pub fn agent<T>(&self, request: &Request<T>, cluster: &str) -> Result<(), Status> {
        self.allow_agent(&Self::certificate_of(request), cluster)
    }

    /// The names in the client certificate of a call (empty without one).
    pub fn certificate_of<T>(request: &Request<T>) -> Vec<String> {
        request
            .peer_certs()
            .and_then(|chain| chain.first().map(|leaf| certificate_names(leaf.as_ref())))
            .unwrap_or_default()
    }

    /// Checks that a caller whose certificate names `names` may act for `cluster`.
    pub fn allow_agent(&self, names: &[String], cluster: &str) -> Result<(), Status> {
        if !self.agent_certificates {
            return Ok(());
        }
        if names.is_empty() {
            self.refused("no-certificate");
            warn!(cluster, "agent refused: no client certificate");
            return Err(Status::permission_denied(
                "agents must present a client certificate signed by the scheduler's --client-ca",
            ));
        }
        if !names.iter().any(|n| n == cluster) {
            self.refused("wrong-cluster");
            warn!(cluster, certificate = ?names, "agent refused: its certificate names another cluster");
            return Err(Status::permission_denied(format!(
                "the client certificate is for {names:?}, not for cluster \"{cluster}\""
            )));
        }
        Ok(())
    }

    fn refused(&self, reason: &str) {
        self.metrics
            .refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// The names a certificate vouches for: its DNS SANs, else its subject CN.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_owned)),
        );
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_parse_and_name_bad_lines() {
        let tokens = Tokens::parse("# users\nt1,alice,admin\n\n t2 , bob , viewer \n").unwrap();
        assert_eq!(tokens.0["t1"], ("alice".into(), Role::Admin));
        assert_eq!(tokens.0["t2"], ("bob".into(), Role::Viewer));
        assert_eq!(
            Tokens::parse("t1,alice").unwrap_err(),
            "line 1: expected token,user,role"
        );
        assert!(
            Tokens::parse("t1,alice,root")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(
            Tokens::parse("t,a,admin\nt,b,viewer")
                .unwrap_err()
                .contains("line 2")
        );
    }

    #[test]
    fn users_need_a_token_and_viewers_only_read() {
        let tokens = Tokens::parse("t1,alice,admin\nt2,bob,viewer").unwrap();
        let guard = Guard::new(Some(tokens), false, Arc::new(Metrics::new()));
        let with = |token: &str| {
            let mut r = Request::new(());
            r.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            r
        };
        assert_eq!(
            guard
                .user(&Request::new(()), Access::Read)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            guard.user(&with("nope"), Access::Read).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(guard.user(&with("t2"), Access::Read).unwrap(), "bob");
        assert_eq!(
            guard.user(&with("t2"), Access::Write).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(guard.user(&with("t1"), Access::Write).unwrap(), "alice");
        let open = Guard::new(None, false, Arc::new(Metrics::new()));
        assert!(open.user(&Request::new(()), Access::Write).is_ok());
    }

    #[test]
    fn agents_without_a_certificate_are_refused_when_certificates_are_required() {
        let guard = Guard::new(None, true, Arc::new(Metrics::new()));
        let err = guard.agent(&Request::new(()), "c1").unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(
            Guard::new(None, false, Arc::new(Metrics::new()))
                .agent(&Request::new(()), "c1")
                .is_ok()
        );
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert!(certificate_names(b"not a certificate").is_empty());
    }
}
