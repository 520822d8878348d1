//! Errors of the zone ALB library. Each names the file, object and field at fault.

use std::path::PathBuf;

use crate::objects::Origin;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no *.yaml or *.yml manifests in {0}")]
    NoManifests(PathBuf),
    #[error("{origin}: not valid YAML: {source}")]
    Yaml { origin: Origin, source: serde_yaml::Error },
    #[error("{origin}: missing field `{field}`")]
    Missing { origin: Origin, field: &'static str },
    #[error("{origin}: {object}: field `{field}`: {message}")]
    Field {
        origin: Origin,
        object: String,
        field: String,
        message: String,
    },
    #[error("{key} is defined twice: in {first} and in {second}")]
    Duplicate { key: String, first: Origin, second: Origin },
    /// An object that parsed but does not make sense with the others.
    #[error("{object}: field `{field}`: {message}")]
    Invalid {
        object: String,
        field: String,
        message: String,
    },
    /// Talking to the Kubernetes API server failed.
    #[error("{0}")]
    Kube(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0} finding(s) would be refused")]
    Check(usize),
    #[error("cannot start worker {index}: {source}")]
    Worker { index: usize, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
